"""Document context for transformer features (FLERT): a sentence read between its neighbours in the same document."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import SAMPLES, run_bilstm
from toolkit.data.conll import read_conll
from toolkit.data.tag_features import FeatureSettings, TaggingFeaturizer, document_contexts
from toolkit.data.vocab import Vocab

SENTENCES = [["EU", "rejects", "it"], ["Peter", "Blackburn"], ["Bonn", "1996"], ["hi"], ["Peter", "visited", "Bonn"]]
DOCUMENTS = [0, 0, 0, 1, 1]


def featurizer(tiny_bert: str, window: int) -> TaggingFeaturizer:
    words = Vocab.build(SENTENCES)
    chars = Vocab.build([list(token) for sentence in SENTENCES for token in sentence])
    return TaggingFeaturizer(words, chars, FeatureSettings(context_tokens=window), tiny_bert)


def test_contexts_stop_at_the_document_and_the_window():
    contexts = document_contexts(SENTENCES, DOCUMENTS, 3)
    assert contexts[0] == ([], ["Peter", "Blackburn", "Bonn"])
    assert contexts[1] == (["EU", "rejects", "it"], ["Bonn", "1996"])
    assert contexts[2] == (["it", "Peter", "Blackburn"], [])  # the last 3 tokens before it; the document ends
    assert contexts[3] == ([], ["Peter", "visited", "Bonn"])  # a new document: nothing of the one before
    assert document_contexts(SENTENCES, DOCUMENTS, 0) == [([], [])] * 5
    assert document_contexts(SENTENCES, None, 1)[3] == (["1996"], ["Peter"])  # no numbers: one document


def test_window_zero_or_empty_contexts_encode_exactly_like_plain_sentences(tiny_bert):
    plain = featurizer(tiny_bert, 0).encode_many(SENTENCES)
    assert featurizer(tiny_bert, 0).encode_many(SENTENCES, document_contexts(SENTENCES, DOCUMENTS, 3)) == plain
    assert featurizer(tiny_bert, 3).encode_many(SENTENCES, document_contexts(SENTENCES, DOCUMENTS, 0)) == plain
    assert featurizer(tiny_bert, 3).encode_many(SENTENCES) == plain  # no contexts given: plain sentences


def test_only_the_sentences_own_subwords_map_to_its_words(tiny_bert):
    encoded = featurizer(tiny_bert, 3).encode_many(SENTENCES, document_contexts(SENTENCES, DOCUMENTS, 3))
    plain = featurizer(tiny_bert, 0).encode_many(SENTENCES)
    for mine, alone in zip(encoded, plain, strict=True):
        own = [subword for subword, word in zip(mine["subwords"], mine["subword_words"], strict=True) if word >= 0]
        assert own == [subword for subword, word in zip(alone["subwords"], alone["subword_words"], strict=True)
                       if word >= 0]
        assert [word for word in mine["subword_words"] if word >= 0] == [w for w in alone["subword_words"] if w >= 0]
    assert len(encoded[1]["subwords"]) > len(plain[1]["subwords"])  # the neighbours are read too


def test_a_context_over_the_positions_shrinks_from_its_far_ends_and_never_cuts_the_sentence(tiny_bert):
    features = featurizer(tiny_bert, 50)
    features.subword_tokenizer.model_max_length = 12
    left, right = ["hi"] * 20, ["bonn"] * 20
    (item,) = features.encode_many([["peter", "blackburn"]], [(left, right)])
    assert len(item["subwords"]) == 12
    words = item["subword_words"]
    assert [word for word in words if word >= 0] == [0, 1, 1]  # peter, black ##burn
    start = words.index(0)
    kept_left, kept_right = start - 1, len(words) - 1 - (start + 3)  # [CLS] left… peter black ##burn right… [SEP]
    assert kept_left + kept_right == 7 and abs(kept_left - kept_right) <= 1  # as many kept on each side
    (whole,) = features.encode_many([["peter"] * 30], [(left, right)])  # the sentence alone is over the limit
    assert [word for word in whole["subword_words"] if word >= 0] == list(range(30))


@pytest.fixture(scope="module")
def context_model(tiny_bert, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("context_run")
    result = run_bilstm("fit", "--config", "configs/ner_sample.yaml", "--trainer.max_epochs", "6",
                        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu", "--data.init_args.transformer", tiny_bert,
                        "--data.init_args.context_tokens", "6", "--trainer.num_sanity_val_steps", "0",
                        "--model.init_args.network.transformer.pooling", "mean")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "model"


def test_training_evaluation_prediction_and_labelling_read_the_same_context(context_model, tmp_path):
    from toolkit.predict import Predictor

    meta = json.loads((context_model / "meta.json").read_text())
    assert meta["tokenizer"]["context_tokens"] == 6
    predictor = Predictor.load(context_model, device="cpu")
    # Training validated with features cached from context windows; evaluate reads the file's documents live.
    assert predictor.evaluate(SAMPLES / "ner/dev.conll")["f1"] == pytest.approx(
        meta["training"]["metrics"]["val_f1"], abs=2e-3)

    sentences = read_conll(SAMPLES / "ner/dev.conll")
    tokens = [sentence.tokens for sentence in sentences]
    by_document = predictor.tag_tokens(tokens, documents=[sentence.document for sentence in sentences])
    contexts = document_contexts(tokens, [sentence.document for sentence in sentences], 6)
    order = list(range(len(tokens)))
    random.Random(0).shuffle(order)
    shuffled = predictor.tag_tokens([tokens[i] for i in order], batch_size=3, contexts=[contexts[i] for i in order])
    for position, index in enumerate(order):  # the caller's contexts, another order and batch size: same answer
        assert shuffled[position].tags == by_document[index].tags
        assert [span[:3] for span in shuffled[position].spans] == [span[:3] for span in by_document[index].spans]
        for mine, theirs in zip(shuffled[position].spans, by_document[index].spans, strict=True):
            assert mine[3] == pytest.approx(theirs[3], abs=1e-5)
    alone = predictor.tag_tokens(tokens)  # plain sentences without context still work, and read less
    assert len(alone) == len(tokens) and [r.tags for r in alone] != [r.tags for r in by_document]

    # bilstm label on CoNLL input: the documents of the file, even when a window holds fewer sentences than one
    output = tmp_path / "tags.jsonl"
    result = run_bilstm("label", str(context_model), str(SAMPLES / "ner/dev.conll"), str(output), "--window", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["tags"] for record in records] == [result.tags for result in by_document]


def test_an_ensemble_of_context_taggers_reads_the_context_and_runs_their_shared_transformer_once(context_model,
                                                                                                  tmp_path):
    from toolkit.ensemble import build_ensemble
    from toolkit.predict import Predictor

    ensemble = Predictor.load(build_ensemble([context_model, context_model], tmp_path / "ensemble"), device="cpu")
    member = Predictor.load(context_model, device="cpu")
    assert ensemble.context_tokens == 6
    sentences = read_conll(SAMPLES / "ner/dev.conll")
    tokens, documents = [s.tokens for s in sentences], [s.document for s in sentences]
    mine, theirs = ensemble.tag_tokens(tokens, documents=documents), member.tag_tokens(tokens, documents=documents)
    assert [r.tags for r in mine] == [r.tags for r in theirs]
    for ours, its in zip(mine, theirs, strict=True):
        assert [span[:3] for span in ours.spans] == [span[:3] for span in its.spans]
        assert all(a[3] == pytest.approx(b[3], abs=1e-5) for a, b in zip(ours.spans, its.spans, strict=True))
    assert ensemble.net._shared is True  # one frozen transformer, computed once for both members


def test_document_context_needs_a_transformer():
    from toolkit.data.tag import TagData
    from toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.context_tokens reads document context into transformer or LM"):
        TagData(str(SAMPLES / "ner/train.conll"), str(SAMPLES / "ner/dev.conll"), context_tokens=4)
    with pytest.raises(ConfigError, match="whole number"):
        TagData(str(SAMPLES / "ner/train.conll"), str(SAMPLES / "ner/dev.conll"), context_tokens=-1)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_lm_features_in_context_are_the_lm_reading_the_context_then_keeping_the_sentence(direction):
    """A forward LM reads the tokens before the sentence, a backward LM those after it; each sentence keeps its own
    positions' states, whatever else shares its batch; window 0 gives the plain features."""
    import torch

    from toolkit.nn.encoder import EncoderConfig
    from toolkit.nn.lm import LMNet, LMNetConfig
    from toolkit.nn.lm_features import LanguageModelFeatures

    torch.manual_seed(0)
    encoder = EncoderConfig(cell="lstm", hidden_size=6, num_layers=1, bidirectional=False, init="torch")
    lm = LMNet(LMNetConfig(embedding_dim=4, encoder=encoder), 30)
    features = LanguageModelFeatures(lm.config, lm.vocab_size, direction)
    features.load_from_lm(lm.state_dict())
    vocab = Vocab.build(SENTENCES)
    lm_vocab = {direction: vocab}
    settings = FeatureSettings(lm_directions=[direction], context_tokens=3)
    words, chars = Vocab.build(SENTENCES), Vocab.build([list(t) for s in SENTENCES for t in s])
    with_context = TaggingFeaturizer(words, chars, settings, lm_vocabs=lm_vocab)
    contexts = document_contexts(SENTENCES, DOCUMENTS, 3)
    encoded = with_context.encode_many(SENTENCES, contexts)
    key = f"lm_{direction}"

    def states(items: list[dict]) -> torch.Tensor:
        batch = TaggingFeaturizer.collate(items)
        if f"{key}_offsets" in batch:
            return features(batch[key], batch[f"{key}_lengths"], batch[f"{key}_offsets"], batch["lengths"])
        return features(batch[key], batch["lengths"])

    together = states(encoded)
    for row, (sentence, (left, right)) in enumerate(zip(SENTENCES, contexts, strict=True)):
        read = (left + sentence) if direction == "forward" else (sentence + right)
        start = len(left) if direction == "forward" else 0
        whole = features(torch.tensor([vocab.encode(read)]), torch.tensor([len(read)]))[0]
        torch.testing.assert_close(together[row, : len(sentence)], whole[start:start + len(sentence)])
        torch.testing.assert_close(states([encoded[row]])[0], together[row, : len(sentence)])  # batch-independent
        assert torch.count_nonzero(together[row, len(sentence):]) == 0
    plain = TaggingFeaturizer(words, chars, FeatureSettings(lm_directions=[direction]), lm_vocabs=lm_vocab)
    assert plain.encode_many(SENTENCES, contexts) == plain.encode_many(SENTENCES)  # window 0: no context read
    assert with_context.encode_many(SENTENCES, document_contexts(SENTENCES, DOCUMENTS, 0)) == \
        plain.encode_many(SENTENCES)
