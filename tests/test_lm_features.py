"""LM features for NER (TagLM): frozen forward/backward LM states join the tagger's word features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, fit_config, run_bilstm
from toolkit import Predictor
from toolkit.data.conll import read_conll
from toolkit.data.lm import LMData
from toolkit.errors import ConfigError
from toolkit.nn.encoder import EncoderConfig
from toolkit.nn.lm import LMNet, LMNetConfig
from toolkit.nn.lm_features import LanguageModelFeatures, reverse_padded
from toolkit.specs.tag import TagConfig

SHARED_CONLL = ROOT.parent / "shared" / "data" / "conll2003"


@pytest.fixture(scope="module")
def taglm(tmp_path_factory) -> dict[str, Path]:
    """The sample LMs (forward, backward) and a tagger that reads their states, as the sample config says."""
    root = tmp_path_factory.mktemp("taglm")
    forward = fit_config("lm_ner_sample", root / "forward", "--trainer.max_epochs", "1")
    backward = fit_config("lm_ner_sample", root / "backward", "--trainer.max_epochs", "1",
                          "--data.init_args.direction", "backward")
    tagger = fit_config("ner_sample", root / "tagger", "--trainer.max_epochs", "2",
                        "--data.init_args.lm_forward", str(forward), "--data.init_args.lm_backward", str(backward))
    return {"forward": forward, "backward": backward, "tagger": tagger, "root": root}


def _lm(direction: str, vocab_size: int = 40, hidden: int = 12) -> LMNet:
    torch.manual_seed(0)
    encoder = EncoderConfig(cell="lstm", hidden_size=hidden, num_layers=2, bidirectional=False, init="torch")
    return LMNet(LMNetConfig(embedding_dim=8, encoder=encoder), vocab_size)


def test_reverse_padded_reverses_each_row_within_its_length():
    values = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    assert reverse_padded(values, torch.tensor([4, 2])).tolist() == [[4, 3, 2, 1], [6, 5, 0, 0]]
    states = torch.arange(16.0).view(2, 4, 2)
    assert torch.equal(reverse_padded(reverse_padded(states, torch.tensor([3, 1])), torch.tensor([3, 1])), states)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_features_are_the_lms_states_in_its_reading_order_and_padding_changes_nothing(direction):
    lm = _lm(direction).eval()
    features = LanguageModelFeatures(lm.config, lm.vocab_size, direction)
    features.load_from_lm(lm.state_dict())
    sentence = torch.tensor([5, 9, 13, 7])
    batch = torch.stack([sentence, torch.tensor([3, 4, 0, 0])])
    got = features(batch, torch.tensor([4, 2]))
    # What the LM itself computes for this one sentence: <eos> then the words, in its own reading order.
    order = sentence if direction == "forward" else sentence.flip(0)
    with torch.no_grad():
        expected = lm.encoder(lm.embed(torch.cat([torch.tensor([0]), order]).unsqueeze(0)),
                              torch.tensor([5])).outputs[0, 1:]
    if direction == "backward":
        expected = expected.flip(0)
    torch.testing.assert_close(got[0], expected)
    alone = features(torch.tensor([[3, 4]]), torch.tensor([2]))
    torch.testing.assert_close(got[1, :2], alone[0])  # a longer neighbour in the batch changes nothing
    assert torch.count_nonzero(got[1, 2:]) == 0


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_with_embeddings_each_word_gets_its_lm_vector_before_its_state(direction):
    lm = _lm(direction).eval()
    plain = LanguageModelFeatures(lm.config, lm.vocab_size, direction)
    both = LanguageModelFeatures(lm.config, lm.vocab_size, direction, with_embeddings=True)
    for features in (plain, both):
        features.load_from_lm(lm.state_dict())
    ids, lengths = torch.tensor([[5, 9, 13], [3, 4, 0]]), torch.tensor([3, 2])
    got = both(ids, lengths)
    assert both.output_size == plain.output_size + 8 == got.size(-1)
    torch.testing.assert_close(got[0, :, :8], lm.embed.weight[ids[0]])
    torch.testing.assert_close(got[1, :2, :8], lm.embed.weight[ids[1, :2]])
    torch.testing.assert_close(got[..., 8:], plain(ids, lengths))


def test_features_stay_frozen_and_in_eval_mode():
    lm = _lm("forward")
    features = LanguageModelFeatures(lm.config, lm.vocab_size, "forward")
    features.train()
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    wrong = _lm("forward", hidden=10).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        features.load_from_lm(wrong)


@pytest.mark.slow
def test_the_tagger_carries_the_lms_weights_unchanged_and_records_them(taglm):
    tagger = Predictor.load(taglm["tagger"], device="cpu")
    meta = json.loads((taglm["tagger"] / "meta.json").read_text())
    records = {record["direction"]: record for record in meta["init_from"]}
    for direction in ("forward", "backward"):
        lm = Predictor.load(taglm[direction], device="cpu").net
        inside = getattr(tagger.net, f"lm_{direction}")
        assert torch.equal(inside.embed.weight, lm.embed.weight)  # copied, and not trained by the tagger
        for name, tensor in lm.encoder.state_dict().items():
            assert torch.equal(inside.encoder.state_dict()[name], tensor), name
        lm_meta = json.loads((taglm[direction] / "meta.json").read_text())
        assert records[direction]["sha256"] == lm_meta["files"]["model.safetensors"]["sha256"]
        assert records[direction]["copied"] == ["lm_features"]
        assert (taglm["tagger"] / f"lm_{direction}_vocab.json").is_file()
    assert meta["tokenizer"]["lm_directions"] == ["forward", "backward"] and meta["tokenizer"]["lm_lowercase"] is False


@pytest.mark.slow
def test_the_lm_tagger_is_an_ordinary_model_directory(taglm, tmp_path):
    import spacy

    predictor = Predictor.load(taglm["tagger"], device="cpu")
    tokens = ["Peter", "Blackburn", "visited", "Brussels", "."]
    # The words are looked up cased in the LMs' vocabularies: "Peter" and "peter" are different LM inputs.
    encoded = predictor.featurizer.encode_many([tokens, [token.lower() for token in tokens]])
    assert encoded[0]["words"] == encoded[1]["words"] and encoded[0]["lm_forward"] != encoded[1]["lm_forward"]
    (tagged,) = predictor.tag_tokens([tokens])
    assert len(tagged.tags) == len(tokens)
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_ner", config={"model": str(taglm["tagger"]), "device": "cpu"})
    doc = nlp("Peter Blackburn visited Brussels on Monday.")
    assert [token.text for token in doc][:2] == ["Peter", "Blackburn"]
    out = tmp_path / "tagged.conll"
    result = run_bilstm("label", str(taglm["tagger"]), str(ROOT / "samples" / "ner" / "dev.conll"), str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(read_conll(out, with_tags=True)) == len(read_conll(ROOT / "samples" / "ner" / "dev.conll"))
    refused = run_bilstm("export", str(taglm["tagger"]), "--onnx")
    assert refused.returncode != 0 and "LM features" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_an_lm_of_the_wrong_direction_is_refused_with_what_to_do(taglm, tmp_path):
    result = run_bilstm("fit", "--config", "configs/ner_sample.yaml", "--trainer.default_root_dir", str(tmp_path),
                        "--trainer.max_epochs", "1", "--data.init_args.lm_backward", str(taglm["forward"]))
    assert result.returncode != 0
    assert "lm_backward" in result.stderr and "forward language model" in result.stderr
    assert "Traceback" not in result.stderr


def test_tag_config_refuses_an_lm_under_the_wrong_direction():
    from toolkit.nn.tagger import TagNetConfig
    from toolkit.specs.lm import LMConfig

    lm = LMConfig(LMNetConfig(), 50, direction="forward")
    with pytest.raises(ConfigError, match="lm_backward is a forward"):
        TagConfig(TagNetConfig(), 10, 10, "bioes", "iob1", lm_backward=lm).validate()


def test_the_sample_lm_reads_no_tagger_dev_sentence():
    data = LMData(**_data_args("configs/lm_ner_sample.yaml"))
    _assert_no_dev_sentence(data, ROOT / "samples" / "ner" / "dev.conll")


@pytest.mark.skipif(not (SHARED_CONLL / "eng.testa.gz").is_file(), reason="CoNLL-2003 not beside this checkout")
def test_the_conll_lms_read_no_dev_sentence():
    for config in ("configs/lm_ner_cased.yaml", "configs/lm_ner_cased_backward.yaml"):
        args = _data_args(config)
        assert not any("testa" in str(path) or "testb" in str(path) for path in args["train_file"])
        data = LMData(**{**args, "corpus_cache": None})
        _assert_no_dev_sentence(data, SHARED_CONLL / "eng.testa.gz")


def _data_args(config: str) -> dict:
    import yaml

    args = yaml.safe_load((ROOT / config).read_text())["data"]["init_args"]
    for key in ("train_file", "dev_file"):
        if isinstance(args.get(key), list):
            args[key] = [str(ROOT / path) for path in args[key]]
        elif args.get(key):
            args[key] = str(ROOT / args[key])
    return args


def _assert_no_dev_sentence(data: LMData, dev_file: Path) -> None:
    train, dev = data.corpus()
    if data.hparams.max_train_lines:
        train = train[: data.hparams.max_train_lines]
    read = set(train) | set(dev)
    train_sentences = {" ".join(s.tokens) for s in read_conll(data.train_files[0], with_tags=False)}
    assert train_sentences & read  # the check reads what the LM reads: the tagger's training sentences are there
    # Dev sentences that the training file does not also hold (a headline like "SOCCER - RESULTS" can be in both).
    dev_sentences = {" ".join(s.tokens) for s in read_conll(dev_file, with_tags=False)} - train_sentences
    assert dev_sentences and not dev_sentences & read


def test_a_missing_lm_directory_is_named_with_its_option(tmp_path):
    from toolkit.data.tag import open_language_models

    with pytest.raises(ConfigError, match=r"data\.lm_backward: .*not found.*bilstm fit"):
        open_language_models({"backward": str(tmp_path / "absent")})


@pytest.mark.slow
def test_each_lm_is_opened_once_and_handed_to_the_model_and_its_checkpoint_form_is_checked(taglm, monkeypatch):
    import toolkit.data.lm as data_lm
    from toolkit.data.tag import TagData
    from toolkit.tasks.tag import TagModule

    opened = []
    load = data_lm.load_model_dir
    monkeypatch.setattr(data_lm, "load_model_dir", lambda path: opened.append(Path(path)) or load(path))
    data = TagData(str(ROOT / "samples" / "ner" / "train.conll"), str(ROOT / "samples" / "ner" / "dev.conll"),
                       lm_forward=str(taglm["forward"]), lm_backward=str(taglm["backward"]))
    model = TagModule(data_info=data.data_info)
    assert opened == [taglm["forward"], taglm["backward"]]  # by the data module; the model took them from it
    lm = Predictor.load(taglm["forward"], device="cpu").net
    assert torch.equal(model.net.lm_forward.embed.weight, lm.embed.weight)
    # The checkpoint's form: plain types, each LM as its path and weights checksum; rebuilt from it, the LMs are
    # opened again and must hold the same weights.
    plain = model.hparams["data_info"]
    sha256 = json.loads((taglm["forward"] / "meta.json").read_text())["files"]["model.safetensors"]["sha256"]
    assert plain["language_models"]["forward"] == {"path": str(taglm["forward"].resolve()), "sha256": sha256}
    assert plain["tags"] == list(data.tags) and plain["vocab_size"] == len(data.featurizer.words)
    rebuilt = TagModule(data_info=plain)
    assert torch.equal(rebuilt.net.lm_forward.embed.weight, lm.embed.weight)
    assert rebuilt.init_from_records == model.init_from_records
    swapped = {**plain, "language_models": {"forward": plain["language_models"]["backward"] | {
        "path": plain["language_models"]["forward"]["path"]}}}
    with pytest.raises(ConfigError, match=r"data\.lm_forward: .*no longer holds the language model"):
        TagModule(data_info=swapped)
