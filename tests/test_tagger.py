"""NER contract: bilstm fit → model directory → Predictor / label / evaluate, for real."""

import json

import pytest

from tests.conftest import SAMPLES, run_bilstm
from toolkit import Predictor
from toolkit.data.conll import read_conll
from toolkit.predict.tag import TagPredictor


@pytest.fixture(scope="module")
def tagger(ner_model_dir) -> TagPredictor:
    return Predictor.load(ner_model_dir, device="cpu")


def test_model_dir_holds_vocabularies_tags_and_schemes(ner_model_dir, tagger):
    meta = json.loads((ner_model_dir / "meta.json").read_text())
    assert meta["task"] == "tag" and meta["model_config"]["input_scheme"] == "iob1"
    assert {"vocab.json", "chars.json", "model.safetensors"} <= set(meta["files"])
    assert set(tagger.entity_types) == {"LOC", "MISC", "ORG", "PER"}
    assert meta["training"]["metrics"]["val_f1"] > 0.3  # learns something from 250 sentences


def test_raw_text_gives_entities_with_character_offsets(tagger):
    text = "The Bank of England met in London on Monday, said Peter Smith of Siemens."
    result = tagger.predict([text, "<br />", text])
    assert result[0] == result[2] and result[1].entities == []
    for entity in result[0].entities:
        assert text[entity.start:entity.end] == entity.text
        assert entity.label in tagger.entity_types and 0 < entity.confidence <= 1
    assert result[0].tokens[:3] == ["The", "Bank", "of"] and len(result[0].tags) == len(result[0].tokens)


def test_batch_composition_does_not_change_tags(tagger):
    sentences = [s.tokens for s in read_conll(SAMPLES / "ner/dev.conll")][:20]
    together = [t.tags for t in tagger.tag_tokens(sentences, batch_size=32)]
    one_by_one = [tagger.tag_tokens([s])[0].tags for s in sentences]
    assert together == one_by_one


def test_label_conll_is_conlleval_compatible_token_for_token(ner_model_dir, tmp_path):
    output = tmp_path / "dev.pred.conll"
    result = run_bilstm("label", str(ner_model_dir), str(SAMPLES / "ner/dev.conll"), str(output))
    assert result.returncode == 0, result.stderr
    source = (SAMPLES / "ner/dev.conll").read_text().splitlines()
    written = output.read_text().splitlines()
    assert len(written) == len(source)
    for original, labelled in zip(source, written, strict=True):
        assert labelled.startswith(original) and (not original or len(labelled.split()) == len(original.split()) + 1)


def test_evaluate_prints_seqeval_scores(ner_model_dir, tagger):
    result = run_bilstm("evaluate", str(ner_model_dir), str(SAMPLES / "ner/dev.conll"))
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert {"precision", "recall", "f1", "per_type", "scheme"} <= set(scores) and scores["scheme"] == "iob1"
    assert set(scores["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    meta = json.loads((ner_model_dir / "meta.json").read_text())
    assert scores["f1"] == pytest.approx(meta["training"]["metrics"]["val_f1"], abs=1e-4)


def test_evaluation_refuses_gold_tags_it_would_misread(tagger, tmp_path):
    from toolkit.data.tagschemes import convert
    from toolkit.errors import DataError

    sentences = read_conll(SAMPLES / "ner/dev.conll")
    unknown = tmp_path / "unknown.conll"
    unknown.write_text("Acme NN B-NP B-COMPANY\nrocks VB B-VP O\n")
    with pytest.raises(DataError, match=r"unknown\.conll:1: entity type 'COMPANY' is not one this model tags"):
        tagger.evaluate(unknown)
    bioes = tmp_path / "bioes.conll"
    bioes.write_text("\n\n".join("\n".join(f"{token} {tag}" for token, tag in
                                          zip(s.tokens, convert(s.tags, "iob1", "bioes"), strict=True))
                                 for s in sentences) + "\n")
    with pytest.raises(DataError, match="tags look like BIOES but the model reads and writes IOB1"):
        tagger.evaluate(bioes)


def test_quantized_evaluation_scores_the_int8_model(ner_model_dir, tagger):
    from toolkit.evaluate import evaluate

    full = evaluate(ner_model_dir, SAMPLES / "ner/dev.conll")
    int8 = evaluate(ner_model_dir, SAMPLES / "ner/dev.conll", quantize=True)
    assert int8["quantized"] is True and "quantized" not in full
    assert int8["f1"] == pytest.approx(full["f1"], abs=0.1)  # same model, int8 weights: close, not identical
    quantized = Predictor.load(ner_model_dir, device="cpu", quantize=True)
    kinds = {type(module).__module__ for module in quantized.net.modules()}
    assert any("quantized" in kind for kind in kinds)  # the weights really are int8 modules


def test_conll_output_needs_a_tagger_and_conll_input(textcat_model_dir, ner_model_dir, tmp_path):
    result = run_bilstm("label", str(textcat_model_dir), str(SAMPLES / "ner/dev.conll"), str(tmp_path / "x.conll"))
    assert result.returncode == 2 and "CoNLL input needs a tagger model" in result.stderr
    result = run_bilstm("label", str(ner_model_dir), str(SAMPLES / "textcat/unlabelled.txt"), str(tmp_path / "x.conll"))
    assert result.returncode == 2 and "CoNLL output needs CoNLL input" in result.stderr


def test_tagger_with_transformer_features_round_trips(tiny_bert, tmp_path):
    """fit with (tiny, random) transformer features → self-contained model dir → same scores when loaded."""
    result = run_bilstm("fit", "--config", "configs/ner_sample.yaml", "--trainer.max_epochs", "1",
                        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu", "--data.init_args.transformer", tiny_bert,
                        "--model.init_args.network.transformer.pooling", "mean")
    assert result.returncode == 0, result.stderr[-3000:]
    model_dir = tmp_path / "model"
    assert (model_dir / "transformer/config.json").is_file()
    meta = json.loads((model_dir / "meta.json").read_text())
    scores = Predictor.load(model_dir, device="cpu").evaluate(SAMPLES / "ner/dev.conll")
    # Training validated with cached (frozen) transformer features; the Predictor runs the transformer live.
    assert scores["f1"] == pytest.approx(meta["training"]["metrics"]["val_f1"], abs=2e-3)


def test_data_info_round_trips_through_its_plain_form_and_refuses_other_keys():
    from toolkit.data.tag import TagDataInfo
    from toolkit.errors import ConfigError

    info = TagDataInfo(5, 7, ["O", "S-PER"], "bioes", "iob1")
    plain = info.to_dict()
    assert json.loads(json.dumps(plain)) == plain == {
        "vocab_size": 5, "num_chars": 7, "tags": ["O", "S-PER"], "scheme": "bioes", "input_scheme": "iob1",
        "transformer": None, "language_models": {}}
    assert info.tags == ("O", "S-PER") and TagDataInfo.of(plain) == info and TagDataInfo.of(info) is info
    older = {key: value for key, value in plain.items() if key not in ("transformer", "language_models")}
    assert TagDataInfo.from_dict(older) == info  # the keys with defaults may be absent
    other = {**{key: value for key, value in plain.items() if key != "tags"}, "labels": ["O", "S-PER"]}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['labels'\]; missing key\(s\) \['tags'\]"):
        TagDataInfo.from_dict(other)
    with pytest.raises(ConfigError, match=r"model\.data_info \(vocab_size, .*\) is required; the CLI links it"):
        TagDataInfo.of(None)


def test_the_checkpoint_keeps_data_info_in_plain_form_and_the_tagger_rebuilds_from_it(ner_run, ner_model_dir):
    import torch

    from toolkit.tasks.tag import TagModule

    (last,) = ner_run.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)  # no class of ours inside: data_info is plain
    hparams = checkpoint["hyper_parameters"]
    meta = json.loads((ner_model_dir / "meta.json").read_text())
    assert hparams["data_info"]["tags"] == meta["labels"]
    assert hparams["data_info"]["vocab_size"] == meta["model_config"]["vocab_size"]
    model = TagModule(hparams["network"], hparams["optimizer"], hparams["data_info"])
    model.load_state_dict(checkpoint["state_dict"])  # strict: the network rebuilt from it has the same shape
    assert model.model_config.scheme == meta["model_config"]["scheme"]
