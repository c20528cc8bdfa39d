"""`bilstm ensemble`: one model directory that averages several models, read by everything as one model.

Members are the session's tiny trained models and variants of them re-saved through their spec (weights with
noise, or a fresh network of another size or cell), so they share the vocabulary and labels without training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import SAMPLES, run_bilstm
from toolkit.artifact import load_model_dir, read_meta
from toolkit.data.export import DataExport
from toolkit.ensemble import build_ensemble, side_files
from toolkit.errors import ConfigError, ModelDirError
from toolkit.predict import Predictor
from toolkit.registry import TASKS, load_piece
from toolkit.specs import spec_for

TEXTS = ["A moving, beautifully shot film.", "A dull, badly acted waste of two hours.", "fine", "not bad at all"]
SENTENCES = [["Peter", "Blackburn", "visited", "Bonn", "."], ["EU", "rejects", "German", "call"], ["Hi"]]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def variant(model_dir: Path, target: Path, seed: int, noise: float = 0.0,
            network: Callable[[object], object] | None = None) -> Path:
    """``model_dir`` re-saved through its spec with the same side files: its weights plus Gaussian ``noise``, or
    (``network``) a fresh random network of the changed network config."""
    model = load_model_dir(model_dir)
    spec = spec_for(model.task)
    config = spec.open(model).config
    generator = torch.Generator().manual_seed(seed)
    if network is not None:
        config = dataclasses.replace(config, network=network(config.network))
        torch.manual_seed(seed)
        state = spec.build_net(config, model.meta.labels).state_dict()
    else:
        state = dict(model.state_dict)
    state = {name: tensor + noise * torch.randn(tensor.shape, generator=generator) if tensor.is_floating_point()
             else tensor for name, tensor in state.items()}
    data = DataExport(model.meta.labels, model.meta.tokenizer,
                      extra_files={name: model_dir / name for name in side_files(model.meta)})
    return spec.save(target, config, data, state)


def resized(hidden_size: int, **changes: object) -> Callable[[object], object]:
    """A network config change: another encoder size (and cell…), other fields as ``changes``."""
    def change(network: object) -> object:
        encoder = dataclasses.replace(network.encoder, hidden_size=hidden_size,
                                      **{k: v for k, v in changes.items() if k == "cell"})
        return dataclasses.replace(network, encoder=encoder, **{k: v for k, v in changes.items() if k != "cell"})
    return change


# ---- classifiers ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def textcat_members(textcat_model_dir: Path, tmp_path_factory) -> list[Path]:
    """The trained classifier, a noisy copy of it, and a fresh network with another hidden size."""
    root = tmp_path_factory.mktemp("textcat_members")
    return [textcat_model_dir, variant(textcat_model_dir, root / "noisy", 1, noise=0.3),
            variant(textcat_model_dir, root / "wider", 2, network=resized(24))]


def test_an_ensemble_of_one_and_of_two_copies_is_the_classifier(textcat_model_dir, tmp_path):
    member = Predictor.load(textcat_model_dir, device="cpu").predict_proba(TEXTS)
    for name, members in (("one", [textcat_model_dir]), ("copies", [textcat_model_dir] * 2)):
        ensemble = Predictor.load(build_ensemble(members, tmp_path / name), device="cpu")
        assert torch.allclose(ensemble.predict_proba(TEXTS), member, atol=1e-6, rtol=0), name


def test_a_classifier_ensemble_averages_the_members_probabilities(textcat_members, tmp_path):
    members = [Predictor.load(path, device="cpu").predict_proba(TEXTS) for path in textcat_members]
    assert (members[0] - members[1]).abs().max() > 1e-2  # the members really differ
    ensemble = Predictor.load(build_ensemble(textcat_members, tmp_path / "ensemble"), device="cpu")
    assert torch.allclose(ensemble.predict_proba(TEXTS), torch.stack(members).mean(0), atol=1e-6, rtol=0)
    meta = read_meta(tmp_path / "ensemble")
    assert meta.task == "classify" and len(meta.model_config["ensemble"]) == 3
    assert meta.model_config["ensemble"][2]["network"]["encoder"]["hidden_size"] == 24
    assert [record["sha256"] for record in meta.init_from] == [
        read_meta(path).files["model.safetensors"]["sha256"] for path in textcat_members]
    assert all(len(record["meta_sha256"]) == 64 for record in meta.init_from)
    assert set(meta.files) == {"model.safetensors", "vocab.json"}
    assert meta.files["vocab.json"] == read_meta(textcat_members[0]).files["vocab.json"]


def test_a_classifier_ensemble_evaluates_labels_runs_in_spacy_and_exports_to_onnx(textcat_members, tmp_path):
    import spacy

    from toolkit.onnx_export import export_onnx

    path = build_ensemble(textcat_members[:2], tmp_path / "ensemble")
    torch_predictor = Predictor.load(path, device="cpu")
    expected = torch_predictor.predict_proba(TEXTS)
    scores = torch_predictor.evaluate(SAMPLES / "textcat" / "dev.jsonl")
    assert 0.0 <= scores["accuracy"] <= 1.0 and scores["n"] > 0

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = run_bilstm("label", str(path), str(texts), str(tmp_path / "labels.jsonl"), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [record["label"] for record in records] == [torch_predictor.labels[i] for i in expected.argmax(-1)]

    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_textcat", config={"model": str(path), "device": "cpu"})
    cats = nlp(TEXTS[0]).cats
    assert cats == pytest.approx(dict(zip(torch_predictor.labels, expected[0].tolist(), strict=True)), abs=1e-6)

    backends = export_onnx(path)
    assert backends["onnx"]["max_abs_output_diff"] < 1e-4
    onnx = Predictor.load(path, backend="onnx")
    assert torch.allclose(onnx.predict_proba(TEXTS), expected, atol=1e-4, rtol=0)

    exported = shutil.copytree(textcat_members[1], tmp_path / "exported_member")
    export_onnx(exported)  # a member's own ONNX files are not side files: neither compared nor copied
    again = build_ensemble([textcat_members[0], exported], tmp_path / "again")
    assert set(read_meta(again).files) == {"model.safetensors", "vocab.json"}
    assert torch.allclose(Predictor.load(again, device="cpu").predict_proba(TEXTS), expected, atol=1e-6, rtol=0)


def test_an_ensemble_with_a_member_that_does_not_export_is_refused_before_any_work(textcat_model_dir, tmp_path):
    from toolkit.onnx_export import export_onnx

    scripted = variant(textcat_model_dir, tmp_path / "mut1", 7, network=resized(8, cell="mut1"))
    path = build_ensemble([textcat_model_dir, scripted], tmp_path / "ensemble")
    with pytest.raises(ConfigError, match=r"fused cells .* not 'mut1'"):
        export_onnx(path)
    assert "model.onnx" not in read_meta(path).files


# ---- taggers ----------------------------------------------------------------------------------------------------


def _batch(predictor) -> dict[str, torch.Tensor]:
    featurizer = predictor.featurizer
    return featurizer.collate(featurizer.encode_many(SENTENCES))


def test_an_ensemble_of_one_and_of_two_copies_is_the_tagger(ner_model_dir, tmp_path):
    member = Predictor.load(ner_model_dir, device="cpu").tag_tokens(SENTENCES)
    for name, members in (("one", [ner_model_dir]), ("copies", [ner_model_dir] * 2)):
        ensemble = Predictor.load(build_ensemble(members, tmp_path / name), device="cpu").tag_tokens(SENTENCES)
        assert [result.tags for result in ensemble] == [result.tags for result in member], name
        for mine, theirs in zip(ensemble, member, strict=True):
            assert [span[:3] for span in mine.spans] == [span[:3] for span in theirs.spans]
            assert [span[3] for span in mine.spans] == pytest.approx([span[3] for span in theirs.spans], abs=1e-6)


def test_a_tagger_ensemble_is_one_crf_over_the_mean_emission_and_transition_scores(ner_model_dir, tmp_path):
    """Member 2: noisy weights (transitions too); member 3: another size and no character features."""
    from toolkit.data.tagschemes import convert
    from toolkit.nn.crf import CRF

    paths = [ner_model_dir, variant(ner_model_dir, tmp_path / "noisy", 3, noise=0.5),
             variant(ner_model_dir, tmp_path / "other", 4, network=resized(20, chars="none"))]
    members = [Predictor.load(path, device="cpu") for path in paths]
    ensemble = Predictor.load(build_ensemble(paths, tmp_path / "ensemble"), device="cpu")
    assert ensemble.config.network.chars == "cnn"  # the featuriser gives characters to the member that reads them
    batch = _batch(ensemble)
    with torch.inference_mode():
        emissions = torch.stack([member.net(batch) for member in members]).mean(0)
        assert torch.allclose(ensemble.net(batch), emissions, atol=1e-6, rtol=0)
        crfs = [member.net.crf for member in members]
        assert (crfs[0].transitions - crfs[1].transitions).abs().max() > 0.1
        mean = CRF(crfs[0].num_tags, (crfs[0].allowed_transitions, crfs[0].allowed_start, crfs[0].allowed_end))
        for name in ("transitions", "start", "end"):
            getattr(mean, name).copy_(torch.stack([getattr(crf, name) for crf in crfs]).mean(0))
        mask = members[0].net.mask(batch)
        paths_expected = mean.viterbi(emissions, mask)
        marginals = mean.marginals(emissions, mask)
    tagged = ensemble.tag_tokens(SENTENCES)
    assert any(result.spans for result in tagged)  # confidences are compared below
    for result, path, row in zip(tagged, paths_expected, range(len(SENTENCES)), strict=True):
        tags = [ensemble.tags[i] for i in path]
        assert result.tags == convert(tags, ensemble.scheme, ensemble.input_scheme)
        for start, end, _, confidence in result.spans:
            expected = marginals[row, torch.arange(start, end), torch.tensor(path[start:end])].mean()
            assert confidence == pytest.approx(float(expected), abs=1e-5)


def test_a_softmax_tagger_ensemble_averages_probabilities_and_does_not_mix_with_a_crf(ner_model_dir, tmp_path):
    paths = [variant(ner_model_dir, tmp_path / f"softmax{seed}", seed, network=resized(16 + seed, decoder="softmax"))
             for seed in (8, 9)]
    members = [Predictor.load(path, device="cpu") for path in paths]
    ensemble = Predictor.load(build_ensemble(paths, tmp_path / "ensemble"), device="cpu")
    batch = _batch(ensemble)
    with torch.inference_mode():
        probabilities = torch.stack([member.net(batch).softmax(-1) for member in members]).mean(0)
        assert torch.allclose(ensemble.net(batch).exp(), probabilities, atol=1e-6, rtol=0)
        _, marginals = ensemble.net.decode(ensemble.net(batch), batch, with_marginals=True)
        mask = ensemble.net.mask(batch)
        assert torch.allclose(marginals[mask], probabilities[mask], atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match=r"members 1 and 2 have different decoders .*'crf' vs 'softmax'"):
        build_ensemble([ner_model_dir, paths[0]], tmp_path / "mixed")


def test_a_tagger_ensemble_exports_its_mean_scores_to_onnx(ner_model_dir, tmp_path):
    from toolkit.onnx_export import export_onnx

    paths = [ner_model_dir, variant(ner_model_dir, tmp_path / "noisy", 5, noise=0.3)]
    path = build_ensemble(paths, tmp_path / "ensemble")
    assert export_onnx(path)["onnx"]["max_abs_output_diff"] < 1e-4
    torch_tags = Predictor.load(path, device="cpu").tag_tokens(SENTENCES)
    onnx_tags = Predictor.load(path, backend="onnx").tag_tokens(SENTENCES)
    assert [result.tags for result in onnx_tags] == [result.tags for result in torch_tags]


# ---- language models --------------------------------------------------------------------------------------------


def _next_token(predictor, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token probabilities after ``ids`` (forward) and after one more token (``step`` from the state)."""
    with torch.inference_mode():
        output = predictor.net(torch.tensor([ids]))
        first = predictor.net.logits(output.hidden[:, -1]).float().softmax(-1)
        log_probs, _ = predictor.net.step(torch.tensor([ids[-1]]), output.state)
    return first, log_probs.exp()


def test_a_language_model_ensemble_averages_next_token_distributions(lm_model_dir, tmp_path):
    """Member 2 is a GRU of another size: its state is one tensor where the LSTM's is two."""
    paths = [lm_model_dir, variant(lm_model_dir, tmp_path / "gru", 6, network=resized(24, cell="gru"))]
    members = [Predictor.load(path, device="cpu") for path in paths]
    ensemble = Predictor.load(build_ensemble(paths, tmp_path / "ensemble"), device="cpu")
    ids = [ensemble.eos, *ensemble.vocab.encode(["the", "company", "said"])]
    got = _next_token(ensemble, ids)
    wanted = [_next_token(member, ids) for member in members]
    assert (wanted[0][0] - wanted[1][0]).abs().max() > 1e-3
    for position in range(2):
        assert torch.allclose(got[position], (wanted[0][position] + wanted[1][position]) / 2, atol=1e-6, rtol=0)
    [generated] = ensemble.generate(["the company"], max_tokens=5, temperature=0)
    assert 1 <= len(generated.tokens) <= 5
    assert ensemble.evaluate(SAMPLES / "lm" / "dev.txt", bptt=7)["perplexity"] > 1


def test_an_ensemble_of_one_and_of_two_copies_is_the_language_model(lm_model_dir, tmp_path):
    member = Predictor.load(lm_model_dir, device="cpu")
    expected = member.evaluate(SAMPLES / "lm" / "dev.txt", bptt=7)["perplexity"]
    greedy = member.generate(["the"], max_tokens=6, temperature=0)[0].tokens
    for name, members in (("one", [lm_model_dir]), ("copies", [lm_model_dir] * 2)):
        ensemble = Predictor.load(build_ensemble(members, tmp_path / name), device="cpu")
        assert ensemble.evaluate(SAMPLES / "lm" / "dev.txt", bptt=7)["perplexity"] == pytest.approx(expected,
                                                                                                      rel=1e-6)
        assert ensemble.score(TEXTS)[0].perplexity == pytest.approx(member.score(TEXTS)[0].perplexity, rel=1e-6)
        assert ensemble.generate(["the"], max_tokens=6, temperature=0)[0].tokens == greedy


def test_a_language_model_ensemble_is_refused_where_one_network_is_needed(lm_model_dir, tmp_path):
    from toolkit.data.lm import open_lm_directory
    from toolkit.onnx_export import export_onnx
    from toolkit.specs.lm import reuse_language_model

    path = build_ensemble([lm_model_dir, lm_model_dir], tmp_path / "ensemble")
    with pytest.raises(ConfigError, match=r"ensemble of language models.*give one of its members"):
        reuse_language_model(open_lm_directory(path, "data.lm_forward"))
    with pytest.raises(ConfigError, match="ONNX export of language-model ensembles is not built"):
        export_onnx(path)


# ---- what members must share ------------------------------------------------------------------------------------


def _edit_meta(path: Path, change: Callable[[dict], None]) -> Path:
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_members_with_different_labels_are_refused_by_the_command_in_one_line(textcat_model_dir, tmp_path):
    other = tmp_path / "reordered"
    shutil.copytree(textcat_model_dir, other)
    _edit_meta(other, lambda meta: meta.update(labels=meta["labels"][::-1]))
    result = run_bilstm("ensemble", str(textcat_model_dir), str(other), "--out", str(tmp_path / "ensemble"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    labels = read_meta(textcat_model_dir).labels
    assert lines == [f"bilstm: error: members 1 and 2 have different labels (an ensemble averages label by label: "
                     f"same set, same order): {labels!r} vs {labels[::-1]!r}"]
    assert not (tmp_path / "ensemble").exists()


def test_members_with_another_vocabulary_task_or_tokenizer_are_refused(textcat_model_dir, ner_model_dir, tmp_path):
    vocab = tmp_path / "vocab"
    shutil.copytree(textcat_model_dir, vocab)
    data = json.loads((vocab / "vocab.json").read_text())
    tokens = data["tokens"]
    tokens[2], tokens[3] = tokens[3], tokens[2]  # still a valid vocabulary, with two words' ids swapped
    (vocab / "vocab.json").write_text(json.dumps(data))
    content = (vocab / "vocab.json").read_bytes()
    _edit_meta(vocab, lambda meta: meta["files"]["vocab.json"].update(sha256=hashlib.sha256(content).hexdigest(),
                                                                      bytes=len(content)))
    with pytest.raises(ConfigError, match=r"members 1 and 2 have different vocab\.json .*sha256"):
        build_ensemble([textcat_model_dir, vocab], tmp_path / "out")
    with pytest.raises(ConfigError, match="members 1 and 3 have different tasks: 'classify' vs 'tag'"):
        build_ensemble([textcat_model_dir, textcat_model_dir, ner_model_dir], tmp_path / "out")
    lowercase = tmp_path / "lowercase"
    shutil.copytree(textcat_model_dir, lowercase)
    _edit_meta(lowercase, lambda meta: meta["tokenizer"].update(lowercase=not meta["tokenizer"]["lowercase"]))
    with pytest.raises(ConfigError, match=r"members 1 and 2 have different tokenizer settings .*lowercase"):
        build_ensemble([textcat_model_dir, lowercase], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_ensemble_member_output_and_tasks_without_an_ensemble_network_are_refused(textcat_model_dir, tmp_path):
    path = build_ensemble([textcat_model_dir, textcat_model_dir], tmp_path / "ensemble")
    with pytest.raises(ConfigError, match=r"member 2 .* is itself an ensemble: give its members instead"):
        build_ensemble([textcat_model_dir, path], tmp_path / "nested")
    with pytest.raises(ConfigError, match="exists; pass --force"):
        build_ensemble([textcat_model_dir], path)
    with pytest.raises(ConfigError, match="is member 1"):
        build_ensemble([path, textcat_model_dir], path, force=True)
    build_ensemble([textcat_model_dir], path, force=True)
    assert len(read_meta(path).model_config["ensemble"]) == 1
    with pytest.raises(ConfigError, match="'translate' models cannot be ensembled"):
        spec_for("translate").ensemble_network()
    for task, entry in TASKS.items():
        if entry.ensemble is not None:
            assert load_piece(entry.ensemble).__module__ == "toolkit.nn.ensemble", task


def test_an_ensemble_whose_members_disagree_in_meta_json_does_not_load(textcat_model_dir, tmp_path):
    path = build_ensemble([textcat_model_dir, textcat_model_dir], tmp_path / "ensemble")
    labels = len(read_meta(path).labels)
    _edit_meta(path, lambda meta: meta["model_config"]["ensemble"][1].update(num_labels=labels + 5))
    with pytest.raises(ModelDirError, match=rf"members 1 and 2 have different model_config\.num_labels: {labels} vs "
                       rf"{labels + 5}"):
        Predictor.load(path, device="cpu")
