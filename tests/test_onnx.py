"""ONNX Runtime backend: `bilstm export --onnx [--int8]`, parity with torch, the files and the errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import SAMPLES, exported_copy, run_bilstm
from toolkit import Predictor
from toolkit.errors import ConfigError, ModelDirError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(onnx_model_dir: Path) -> Path:
    return onnx_model_dir


def sample_texts() -> list[str]:
    return [json.loads(line)["text"] for line in (SAMPLES / "textcat" / "dev.jsonl").read_text().splitlines()]


def test_export_lists_and_checksums_the_files_and_records_the_backends(exported):
    meta = json.loads((exported / "meta.json").read_text())
    assert {"model.onnx", "model.int8.onnx", "model.safetensors", "vocab.json"} <= set(meta["files"])
    assert meta["backends"]["onnx"]["file"] == "model.onnx" and meta["backends"]["onnx"]["opset"] == 17
    assert meta["backends"]["onnx-int8"]["source"] == "model.onnx"
    assert meta["files"]["model.onnx"]["bytes"] == (exported / "model.onnx").stat().st_size


def test_onnx_gives_the_same_labels_and_probabilities_as_torch(exported):
    texts = sample_texts()
    torch_backend = Predictor.load(exported, device="cpu")
    onnx_backend = Predictor.load(exported, backend="onnx")
    assert [p.label for p in onnx_backend.predict(texts)] == [p.label for p in torch_backend.predict(texts)]
    assert torch.allclose(onnx_backend.predict_proba(texts), torch_backend.predict_proba(texts), atol=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 9, 130])
def test_the_time_axis_is_dynamic_and_padding_stays_exact(exported, steps):
    torch_net = Predictor.load(exported, device="cpu").net
    onnx_net = Predictor.load(exported, backend="onnx").net
    ids = torch.randint(2, 40, (3, steps))
    lengths = torch.tensor([steps, max(1, steps // 2), 1])
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    with torch.inference_mode():
        assert torch.allclose(onnx_net(ids, lengths), torch_net(ids, lengths), atol=1e-4)
    # a padded row scores as its unpadded self
    alone = onnx_net(ids[2:, :1], lengths[2:])
    assert torch.allclose(alone, onnx_net(ids, lengths)[2:], atol=1e-5)


def test_int8_runs_and_mostly_agrees_with_fp32(exported):
    texts = sample_texts()
    fp32 = [p.label for p in Predictor.load(exported, backend="onnx").predict(texts)]
    int8 = Predictor.load(exported, backend="onnx", quantize=True)
    assert int8.net.path.name == "model.int8.onnx"
    labels = [p.label for p in int8.predict(texts)]
    assert sum(a == b for a, b in zip(labels, fp32, strict=True)) >= 0.9 * len(texts)


def test_evaluate_takes_the_backend(exported):
    from toolkit.evaluate import evaluate

    result = run_bilstm("evaluate", str(exported), str(SAMPLES / "textcat" / "dev.jsonl"), "--backend", "onnx")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["backend"] == "onnx"
    assert metrics["accuracy"] == evaluate(exported, SAMPLES / "textcat" / "dev.jsonl")["accuracy"]


def test_clear_errors(exported, textcat_model_dir, lm_model_dir, tmp_path):
    with pytest.raises(ModelDirError, match=r"bilstm export .* --onnx"):
        Predictor.load(textcat_model_dir, backend="onnx")
    with pytest.raises(ConfigError, match="unknown backend"):
        Predictor.load(exported, backend="tensorrt")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        Predictor.load(exported, backend="onnx", device="cuda")
    with pytest.raises(ModelDirError, match=r"bilstm export .* --onnx"):
        Predictor.load(lm_model_dir, backend="onnx")
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    with open(broken / "model.onnx", "r+b") as handle:  # a flipped byte: the checksum catches it
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelDirError, match=r"model\.onnx is corrupt"):
        Predictor.load(broken, backend="onnx")


@pytest.mark.parametrize(("task", "cell", "padding", "extra", "words"), [
    ("lm", "sru", "reverse", {}, "fused cells"), ("classify", "mut1", "reverse", {}, "fused cells"),
    ("classify", "lstm", "packed", {}, "padding"), ("tag", "gru", "reverse", {"chars": "lstm"}, "character BiLSTM"),
    ("tag", "lstm", "reverse", {"chars": "cnn", "transformer": True}, "transformer features"),
    ("tag", "lstm", "reverse", {"chars": "cnn", "lms": {"forward": "an LM config"}}, "LM features"),
])
def test_what_does_not_export_is_refused_before_any_work(task, cell, padding, extra, words):
    from types import SimpleNamespace

    from toolkit.nn.encoder import EncoderConfig
    from toolkit.onnx_export import _check_exportable

    encoder = EncoderConfig(cell=cell, padding=padding)
    network = SimpleNamespace(encoder=encoder, chars=extra.get("chars", "none"))
    with pytest.raises(ConfigError, match=words):
        _check_exportable(SimpleNamespace(task=task,
                                          config=SimpleNamespace(network=network,
                                                                 transformer=extra.get("transformer", False),
                                                                 language_models=lambda: extra.get("lms", {}))))


def test_the_batch_job_and_the_spacy_component_take_the_backend(exported, tmp_path):
    import spacy

    from pipelines.label import label_file

    texts = sample_texts()
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    result = run_bilstm("label", str(exported), str(source), str(tmp_path / "onnx.jsonl"), "--backend", "onnx",
                        "--quiet")
    assert result.returncode == 0, result.stderr
    labelled = [json.loads(line) for line in (tmp_path / "onnx.jsonl").read_text().splitlines()]
    assert [r["label"] for r in labelled] == [p.label for p in Predictor.load(exported, device="cpu").predict(texts)]
    with pytest.raises(ConfigError, match="one process"):
        label_file(exported, source, tmp_path / "ddp.jsonl", backend="onnx", devices=2)

    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_textcat", config={"model": str(exported), "backend": "onnx"})
    component = nlp.get_pipe("bilstm_textcat")
    docs = list(nlp.pipe(texts[:5]))
    assert type(component.predictor.net).__name__ == "OnnxNet"
    want = Predictor.load(exported, device="cpu").predict(texts[:5])
    for doc, prediction in zip(docs, want, strict=True):
        assert max(doc.cats, key=doc.cats.get) == prediction.label
        assert doc.cats[prediction.label] == pytest.approx(prediction.score, abs=1e-4)


# ---- the tagger: tag scores from ONNX Runtime, the CRF in torch ------------------------------------------------

@pytest.fixture(scope="module")
def exported_tagger(ner_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_copy(ner_model_dir, tmp_path_factory, "onnx_ner")[0]


def conll_sentences() -> list[list[str]]:
    from toolkit.data.conll import read_conll

    return [sentence.tokens for sentence in read_conll(SAMPLES / "ner" / "dev.conll")]


def test_tagger_export_gives_the_same_tags_entities_and_confidences(exported_tagger):
    meta = json.loads((exported_tagger / "meta.json").read_text())
    assert meta["backends"]["onnx"]["inputs"] == ["words", "casing", "chars", "lengths"]
    assert meta["backends"]["onnx"]["max_abs_output_diff"] <= 1e-4
    sentences = conll_sentences()
    torch_backend = Predictor.load(exported_tagger, device="cpu")
    onnx_backend = Predictor.load(exported_tagger, backend="onnx")
    expected, got = torch_backend.tag_tokens(sentences), onnx_backend.tag_tokens(sentences)
    assert [r.tags for r in got] == [r.tags for r in expected]
    assert any(r.spans for r in expected), "the sample tagger should find entities"
    for mine, theirs in zip(got, expected, strict=True):
        assert [span[:3] for span in mine.spans] == [span[:3] for span in theirs.spans]
        assert [span[3] for span in mine.spans] == pytest.approx([span[3] for span in theirs.spans], abs=1e-4)
    text = "Peter Blackburn visited Bonn in 1996 ."
    mine, theirs = onnx_backend.predict([text])[0].entities, torch_backend.predict([text])[0].entities
    assert [(e.text, e.label, e.start, e.end) for e in mine] == [(e.text, e.label, e.start, e.end) for e in theirs]
    assert [e.confidence for e in mine] == pytest.approx([e.confidence for e in theirs], abs=1e-4)


@pytest.mark.parametrize(("steps", "word_length"), [(1, 1), (4, 12), (57, 3)])
def test_tagger_axes_are_dynamic(exported_tagger, steps, word_length):
    from toolkit.onnx_export import tagger_recipe

    torch_predictor = Predictor.load(exported_tagger, device="cpu")
    onnx_net = Predictor.load(exported_tagger, backend="onnx").net
    recipe = tagger_recipe(torch_predictor)
    lengths = (steps, max(1, steps // 3))
    inputs = recipe.make_inputs(2, steps, lengths, 7)
    batch = dict(zip(recipe.input_names, inputs, strict=True))
    batch["chars"] = torch.randint(1, 20, (2, steps, word_length)) * (batch["words"] != 0).unsqueeze(-1)
    with torch.inference_mode():
        expected = torch_predictor.net(batch)
    got = onnx_net(batch)
    for row, length in enumerate(lengths):
        assert torch.allclose(got[row, :length], expected[row, :length], atol=1e-4)


def test_tagger_int8_and_the_spacy_component(exported_tagger):
    import spacy

    sentences = conll_sentences()
    fp32 = Predictor.load(exported_tagger, backend="onnx").tag_tokens(sentences)
    int8 = Predictor.load(exported_tagger, backend="onnx", quantize=True)
    assert int8.net.scores.path.name == "model.int8.onnx"
    tags = [tag for result in int8.tag_tokens(sentences) for tag in result.tags]
    reference = [tag for result in fp32 for tag in result.tags]
    assert sum(a == b for a, b in zip(tags, reference, strict=True)) >= 0.9 * len(reference)

    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_ner", config={"model": str(exported_tagger), "backend": "onnx"})
    doc = nlp("Peter Blackburn visited Bonn in 1996 .")
    want = Predictor.load(exported_tagger, device="cpu").predict([doc.text])[0].entities
    assert [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents] == [(e.start, e.end, e.label) for e in want]


# ---- the translator: encoder and decoder step from ONNX Runtime, the search in torch ---------------------------

@pytest.fixture(scope="module")
def exported_translator(translate_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_copy(translate_model_dir, tmp_path_factory, "onnx_translate")[0]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translator_export_gives_the_same_translations(exported_translator, beam_size):
    meta = json.loads((exported_translator / "meta.json").read_text())
    assert meta["backends"]["onnx"]["files"] == {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
    assert {"encoder.onnx", "decoder_step.onnx", "encoder.int8.onnx", "decoder_step.int8.onnx"} <= set(meta["files"])
    sources = (SAMPLES / "translate" / "dev.de").read_text().splitlines()[:30]
    torch_backend = Predictor.load(exported_translator, device="cpu")
    onnx_backend = Predictor.load(exported_translator, backend="onnx")
    expected = torch_backend.predict(sources, beam_size=beam_size, return_attention=True)
    got = onnx_backend.predict(sources, beam_size=beam_size, return_attention=True)
    assert [r.translation for r in got] == [r.translation for r in expected]
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-4)
    for mine, theirs in zip(got, expected, strict=True):
        assert torch.allclose(torch.tensor(mine.attention), torch.tensor(theirs.attention), atol=1e-4)


def test_translator_int8_and_the_evaluate_command(exported_translator):
    sources = (SAMPLES / "translate" / "dev.de").read_text().splitlines()[:30]
    fp32 = [r.translation for r in Predictor.load(exported_translator, backend="onnx").predict(sources, beam_size=1)]
    int8 = Predictor.load(exported_translator, backend="onnx", quantize=True)
    assert int8.net.encoder_graph.path.name == "encoder.int8.onnx"
    same = sum(a == b for a, b in zip([r.translation for r in int8.predict(sources, beam_size=1)], fp32, strict=True))
    assert same >= 0.8 * len(sources)
    result = run_bilstm("evaluate", str(exported_translator), str(SAMPLES / "translate" / "dev.de"), "--backend",
                        "onnx")
    assert result.returncode == 0, result.stderr[-2000:]
    from toolkit.evaluate import evaluate

    assert json.loads(result.stdout)["bleu"] == evaluate(exported_translator, SAMPLES / "translate" / "dev.de")["bleu"]

    import spacy

    nlp = spacy.blank("de")
    nlp.add_pipe("bilstm_translate", config={"model": str(exported_translator), "backend": "onnx", "beam_size": 1})
    assert nlp(sources[0])._.translation == fp32[0]


def test_translator_with_a_deeper_encoder_and_a_gru_decoder_exports(tmp_path):
    """Decoder layers take the top encoder layers' final states, and a GRU decoder has no cell state: both graphs
    must still match torch (a one-element list index used to be traced as an integer here)."""
    result = run_bilstm("fit", "--config", "configs/translate_sample.yaml", "--trainer.max_steps", "2",
                        "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
                        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu", "--model.init_args.network.encoder.num_layers", "2",
                        "--model.init_args.network.decoder.cell", "gru")
    assert result.returncode == 0, result.stderr[-3000:]
    exported = run_bilstm("export", str(tmp_path / "model"), "--onnx")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout)["backends"]["onnx"]["state"] == ["hidden", "feed"]
    sources = (SAMPLES / "translate" / "dev.de").read_text().splitlines()[:8]
    want = [r.translation for r in Predictor.load(tmp_path / "model", device="cpu").predict(sources, beam_size=2)]
    got = [r.translation for r in Predictor.load(tmp_path / "model", backend="onnx").predict(sources, beam_size=2)]
    assert got == want


# ---- the language model: one graph with the recurrent state as input and output -------------------------------

@pytest.fixture(scope="module")
def exported_lm(lm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_copy(lm_model_dir, tmp_path_factory, "onnx_lm")[0]


def test_lm_export_scores_evaluates_and_samples_like_torch(exported_lm):
    meta = json.loads((exported_lm / "meta.json").read_text())
    assert meta["backends"]["onnx"]["inputs"] == ["ids", "lengths", "hidden", "cell"]
    assert meta["backends"]["onnx"]["state_outputs"] == ["new_hidden", "new_cell"]
    texts = (SAMPLES / "lm" / "dev.txt").read_text().splitlines()[:40]
    torch_backend = Predictor.load(exported_lm, device="cpu")
    onnx_backend = Predictor.load(exported_lm, backend="onnx")
    for mine, theirs in zip(onnx_backend.score(texts), torch_backend.score(texts), strict=True):
        assert mine.tokens == theirs.tokens
        assert mine.token_log_probs == pytest.approx(theirs.token_log_probs, abs=1e-4)  # mixed lengths, padded
    # the state carried from window to window (bptt 7: many windows) and from batch column to column
    options = {"batch_size": 3, "bptt": 7}
    mine = onnx_backend.evaluate(SAMPLES / "lm" / "dev.txt", **options)
    theirs = torch_backend.evaluate(SAMPLES / "lm" / "dev.txt", **options)
    assert mine["tokens"] == theirs["tokens"] and mine["perplexity"] == pytest.approx(theirs["perplexity"], rel=1e-5)
    prompts = ["the", "", "a new"]  # one token at a time through the graph, prompts of different lengths
    sampled = {name: [g.text for g in backend.generate(prompts, max_tokens=12, top_k=5, seed=7)]
               for name, backend in (("onnx", onnx_backend), ("torch", torch_backend))}
    assert sampled["onnx"] == sampled["torch"] and any(sampled["onnx"])


def test_lm_int8_runs_and_stays_close(exported_lm):
    texts = (SAMPLES / "lm" / "dev.txt").read_text().splitlines()[:40]
    int8 = Predictor.load(exported_lm, backend="onnx", quantize=True)
    assert int8.net.graph.path.name == "model.int8.onnx"
    fp32 = Predictor.load(exported_lm, backend="onnx")
    ratios = [a.perplexity / b.perplexity for a, b in zip(int8.score(texts), fp32.score(texts), strict=True)]
    assert 0.8 < sum(ratios) / len(ratios) < 1.25  # int8 weights: close, not equal


def test_the_spacy_lm_component_takes_the_backend(exported_lm):
    import spacy

    texts = (SAMPLES / "lm" / "dev.txt").read_text().splitlines()[:10]
    perplexities = {}
    for backend in ("torch", "onnx"):
        nlp = spacy.blank("en")
        nlp.add_pipe("bilstm_lm", config={"model": str(exported_lm), "backend": backend, "device": "cpu"})
        perplexities[backend] = [doc._.perplexity for doc in nlp.pipe(texts)]
    assert perplexities["onnx"] == pytest.approx(perplexities["torch"], rel=1e-4)
