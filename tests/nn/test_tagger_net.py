import pytest
import torch

from toolkit.data.casing import casing_id
from toolkit.data.tag_features import FeatureSettings, TaggingFeaturizer
from toolkit.data.tagschemes import allowed_transitions, is_valid, tag_set
from toolkit.data.vocab import Vocab
from toolkit.nn.encoder import EncoderConfig
from toolkit.nn.features import CharBiLSTM, CharCNN
from toolkit.nn.tagger import TagNet, TagNetConfig
from toolkit.nn.transformer import TransformerFeaturesConfig, TransformerWordFeatures

SENTENCES = [["Peter", "Blackburn", "visited", "Bonn", "in", "1996", "."], ["EU", "rejects", "it"], ["Hi"]]


def featurizer(transformer=None) -> TaggingFeaturizer:
    words = Vocab.build([[t.lower() for t in s] for s in SENTENCES])
    chars = Vocab.build([list(t) for s in SENTENCES for t in s])
    return TaggingFeaturizer(words, chars, FeatureSettings(), transformer)


def test_casing_classes():
    assert [casing_id(t) for t in ["1996", "12.5%", "rejects", "EU", "Peter", "iPhone4", "-"]] == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("encoder", [CharCNN(20, 8, 6), CharBiLSTM(20, 8, 3)])
def test_char_encoders_ignore_padding(encoder):
    encoder.eval()
    chars = torch.tensor([[[3, 4, 5, 0], [6, 0, 0, 0], [0, 0, 0, 0]]])
    out = encoder(chars)
    assert out.shape == (1, 3, encoder.output_size)
    assert torch.all(out[0, 2] == 0)  # a padded word position has no characters
    torch.testing.assert_close(out[0, :2], encoder(chars[:, :2, :3])[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("encoder", [CharCNN(20, 8, 6), CharBiLSTM(20, 8, 3)])
def test_char_encoders_run_under_bf16_autocast(encoder):
    # Lightning's bf16-mixed trains under autocast: the word buffer must take the encoder's dtype (a float32
    # buffer failed the first CUDA epoch with "Index put requires the source and destination dtypes match")
    chars = torch.tensor([[[3, 4, 5, 0], [6, 0, 0, 0], [0, 0, 0, 0]]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(chars)
    out.float().sum().backward()
    assert out.shape == (1, 3, encoder.output_size) and torch.all(out[0, 2] == 0)
    assert torch.isfinite(out.float()).all()


def test_transformer_features_pool_subwords_and_handle_long_inputs(tiny_bert):
    feats = featurizer(tiny_bert)
    encoded = feats.encode_many([["Blackburn", "visited"]])[0]
    assert encoded["subword_words"] == [-1, 0, 0, 1, -1]  # [CLS] black ##burn visited [SEP]
    batch = TaggingFeaturizer.collate([encoded])
    for pooling in ("first", "mean"):
        module = TransformerWordFeatures(tiny_bert, TransformerFeaturesConfig(pooling=pooling)).eval()
        out = module(batch["subwords"], batch["subword_mask"], batch["subword_words"], 2)
        states = module.model(input_ids=batch["subwords"]).last_hidden_state[0]
        expected = states[1] if pooling == "first" else states[1:3].mean(0)
        torch.testing.assert_close(out[0, 0], expected, atol=1e-5, rtol=1e-4)
    long = feats.encode_many([["Peter", "Blackburn", "visited", "Bonn", "in", "1996", "."] * 2])[0]
    batch = TaggingFeaturizer.collate([long])  # 17 subwords > 8 positions: encoded window by window
    out = module(batch["subwords"], batch["subword_mask"], batch["subword_words"], 14)
    assert out.shape == (1, 14, 16) and torch.isfinite(out).all()


def test_frozen_transformer_gets_no_gradient_and_stays_in_eval(tiny_bert):
    module = TransformerWordFeatures(tiny_bert, TransformerFeaturesConfig(fine_tune=False)).train()
    assert not module.model.training and not any(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("decoder", ["crf", "softmax"])
@pytest.mark.parametrize("with_transformer", [False, True])
def test_tagger_is_padding_invariant_and_decodes_valid_tags(tiny_bert, decoder, with_transformer):
    transformer = tiny_bert if with_transformer else None
    feats = featurizer(transformer)
    tags = tag_set(["LOC", "PER"], "bioes")
    torch.manual_seed(0)
    net = TagNet(TagNetConfig(embedding_dim=8, chars="cnn", char_dim=4, char_hidden=4, casing_dim=2,
                                         encoder=EncoderConfig(hidden_size=6), decoder=decoder),
                            len(feats.words), len(feats.chars), len(tags), allowed_transitions(tags, "bioes"),
                            transformer).eval()
    encoded = feats.encode_many(SENTENCES)
    with torch.no_grad():
        batch = TaggingFeaturizer.collate(encoded)
        scores = net(batch)
        for row, item in enumerate(encoded):
            alone = net(TaggingFeaturizer.collate([item]))
            torch.testing.assert_close(scores[row, : len(item["words"])], alone[0], atol=1e-5, rtol=1e-4)
        paths, marginals = net.decode(scores * 20, batch, with_marginals=True)
    assert [len(p) for p in paths] == [7, 3, 1]
    assert all(is_valid([tags[i] for i in path], "bioes") for path in paths)
    torch.testing.assert_close(marginals[0].sum(-1), torch.ones(7))


def test_transformer_weights_load_from_safetensors_only(tiny_bert, tmp_path):
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_bert, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")  # a pickle is never opened
    with pytest.raises(ValueError, match=r"no loadable model\.safetensors.*convert the weights to safetensors"):
        TransformerWordFeatures(str(pickled), TransformerFeaturesConfig())
