"""Pretrain, then fine-tune: LM → classifier on the bundled sample, weight copying, unfreezing, rates, no leak."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, fit_config
from toolkit import Predictor
from toolkit.data.classify import ClassifyData
from toolkit.data.lm import LMData
from toolkit.errors import ConfigError
from toolkit.nn.classifier import ClassifyNet, ClassifyNetConfig
from toolkit.nn.encoder import EncoderConfig
from toolkit.nn.lm import LMNet, LMNetConfig
from toolkit.nn.lm_transfer import vocabulary_rows
from toolkit.tasks.base import lr_factor
from toolkit.tasks.finetune import GradualUnfreezing, InitFrom, initialise_from_lms, layer_groups, optimizer_groups

SAMPLE = ROOT / "samples" / "textcat"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, Path]:
    """The three sample configs, one after the other, as docs/pretraining.md runs them (fewer epochs)."""
    root = tmp_path_factory.mktemp("pretraining")
    forward = fit_config("lm_textcat_sample", root / "forward", "--trainer.max_epochs", "2")
    backward = fit_config("lm_textcat_sample_backward", root / "backward", "--trainer.max_epochs", "1",
                    "--model.init_args.init_from.forward", str(forward))
    classifier = fit_config("textcat_sample_pretrained", root / "classifier", "--trainer.max_epochs", "3",
                      "--model.init_args.init_from.forward", str(forward),
                      "--model.init_args.init_from.backward", str(backward),
                      "--model.init_args.finetune.unfreeze_every", "0.5",
                      "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
                      "--trainer.logger.init_args.save_dir", str(root / "classifier"))
    return {"forward": forward, "backward": backward, "classifier": classifier, "root": root}


@pytest.mark.slow
def test_the_pipeline_gives_an_ordinary_model_directory_that_records_its_lms(pipeline):
    meta = json.loads((pipeline["classifier"] / "meta.json").read_text())
    records = {record["direction"]: record for record in meta["init_from"]}
    for direction in ("forward", "backward"):
        lm_meta = json.loads((pipeline[direction] / "meta.json").read_text())
        assert records[direction]["sha256"] == lm_meta["files"]["model.safetensors"]["sha256"]
        assert Path(records[direction]["path"]) == pipeline[direction].resolve()
        assert records[direction]["layers"] == 2
    assert records["forward"]["copied"] == ["embeddings", "encoder"] and records["backward"]["copied"] == ["encoder"]
    (result,) = Predictor.load(pipeline["classifier"], device="cpu").predict(["a wonderful , moving film"])
    assert result.label in ("pos", "neg") and 0.0 <= result.score <= 1.0
    # The backward LM shares the forward LM's (frozen) word vectors: one table serves both stacks.
    forward_vectors = Predictor.load(pipeline["forward"], device="cpu").net.embed.weight
    backward_vectors = Predictor.load(pipeline["backward"], device="cpu").net.embed.weight
    assert torch.equal(forward_vectors, backward_vectors)


@pytest.mark.slow
def test_unfreezing_and_per_layer_rates_are_what_the_config_says(pipeline):
    rows = list(csv.DictReader(next((pipeline["root"] / "classifier").glob("lightning_logs/version_*/metrics.csv"))
                               .open()))
    steps = [row for row in rows if row.get("lr-AdamW/top")]
    unfrozen = [float(row["unfrozen_groups"]) for row in rows if row.get("unfrozen_groups")]
    assert unfrozen[0] == 1 and unfrozen == sorted(unfrozen) and unfrozen[-1] == 4  # top, enc 2, enc 1, features
    for row in steps:  # layer_lr_decay 2.6: each group below the top at 1/2.6 of the one above
        top, second, first = (float(row[f"lr-AdamW/{name}"]) for name in ("top", "encoder.2", "encoder.1"))
        assert second == pytest.approx(top / 2.6) and first == pytest.approx(top / 2.6**2)
    peak = max(float(row["lr-AdamW/top"]) for row in steps)
    assert peak == pytest.approx(0.005, rel=0.05)  # slanted triangular: rises to the peak, then falls
    rates = [float(row["lr-AdamW/top"]) for row in steps]
    assert rates[0] < 0.8 * peak and rates.index(peak) < len(rates) / 4 and rates[-1] < peak / 4


@pytest.mark.slow
def test_init_from_copies_the_lm_weights_and_keeps_unknown_words_fresh(pipeline):
    encoder = EncoderConfig(hidden_size=64, num_layers=2, separate_directions=True)
    tokens = ["<pad>", "<unk>", "film", "the", "zzzunseenzzz"]
    net = ClassifyNet(ClassifyNetConfig(embedding_dim=64, encoder=encoder), len(tokens), 2)
    fresh = net.embed.embedding.weight.detach().clone()
    records = initialise_from_lms(net, encoder, InitFrom(str(pipeline["forward"]), str(pipeline["backward"])), tokens)
    assert [record["words_found"] for record in records] == [3, 3]
    forward = Predictor.load(pipeline["forward"], device="cpu")
    backward = Predictor.load(pipeline["backward"], device="cpu")
    for position, token in enumerate(tokens):
        row = net.embed.embedding.weight[position]
        if token in forward.vocab.index:
            assert torch.equal(row, forward.net.embed.weight[forward.vocab.index[token]])
        else:
            assert torch.equal(row, fresh[position])  # <pad> and the unseen word keep their rows
    for depth in range(2):
        for ours, lm in ((net.encoder.layers[depth].forward_rnn, forward), (net.encoder.layers[depth].backward_rnn,
                                                                             backward)):
            theirs = lm.net.encoder.layers[depth].forward_rnn
            for name, tensor in ours.state_dict().items():
                assert torch.equal(tensor, theirs.state_dict()[name]), (depth, name)


@pytest.mark.slow
@pytest.mark.parametrize(("change", "message"), [
    ({"hidden_size": 32}, "hidden_size is 32, the LM's is 64"),
    ({"separate_directions": False}, "separate_directions: true"),
    ({"cell": "gru"}, "encoder.cell is 'gru'"),
])
def test_a_network_that_cannot_take_the_lm_gets_a_clear_error(pipeline, change, message):
    encoder = EncoderConfig(**{"hidden_size": 64, "num_layers": 2, "separate_directions": True, **change})
    net = ClassifyNet(ClassifyNetConfig(embedding_dim=64, encoder=encoder), 3, 2)
    with pytest.raises(ConfigError, match=message):
        initialise_from_lms(net, encoder, InitFrom(str(pipeline["forward"]), str(pipeline["backward"])),
                            ["<pad>", "<unk>", "film"])
    wide = ClassifyNet(ClassifyNetConfig(embedding_dim=32, encoder=encoder), 3, 2)
    with pytest.raises(ConfigError, match="embedding_dim: 64"):
        initialise_from_lms(wide, encoder, InitFrom(str(pipeline["forward"])), ["<pad>", "<unk>", "film"])


def test_no_classifier_dev_review_reaches_the_language_model(tmp_path):
    """The LM reads the classifier's training file minus exactly the dev split ClassifyData carves."""
    train = str(SAMPLE / "train.jsonl")
    classifier = ClassifyData(train_file=train, dev_fraction=0.2, split_seed=7)
    classifier.setup("fit")
    lm = LMData(train_file=[train, str(SAMPLE / "unlabelled.txt")], exclude_dev_of=train,
                           exclude_dev_fraction=0.2, exclude_split_seed=7, split="spacy", lowercase=True)
    lm_train, lm_dev = lm.corpus()
    dev_texts = {json.loads(line)["text"] for line in (SAMPLE / "train.jsonl").read_text().splitlines()
                 if json.loads(line)["text"] in _classifier_dev_texts(classifier)}
    assert len(dev_texts) == 80 and lm.excluded == 80
    assert not dev_texts & (set(lm_train) | set(lm_dev))
    assert len(lm_train) + len(lm_dev) == 400 - 80 + 30  # every other review and the unlabelled lines
    with pytest.raises(ConfigError, match=r"not one of data\.train_file"):
        LMData(train_file=[train], exclude_dev_of="other.jsonl")


def _classifier_dev_texts(data: ClassifyData) -> set[str]:
    from toolkit.data.datamodule import carve_dev
    from toolkit.data.readers import read_labelled

    _, dev = carve_dev(read_labelled(data.hparams.train_file), data.hparams.dev_fraction, data.hparams.split_seed)
    assert len(dev) == len(data.datasets["val"])  # the same split the classifier is scored on
    return {example.text for example in dev}


def test_vocabulary_mapping_matches_words_and_skips_padding():
    rows, found = vocabulary_rows(["<pad>", "<unk>", "good", "nope", "bad"], {"<eos>": 0, "<unk>": 1, "bad": 2,
                                                                             "good": 3})
    assert found.tolist() == [False, True, True, False, True] and rows[found].tolist() == [1, 3, 2]


def test_layer_groups_rates_and_gradual_unfreezing():
    encoder = EncoderConfig(hidden_size=8, num_layers=2)
    net = ClassifyNet(ClassifyNetConfig(embedding_dim=6, encoder=encoder), 10, 2)
    assert [name for name, _ in layer_groups(net)] == ["features", "encoder.1", "encoder.2", "top"]
    groups = optimizer_groups(net, 1.0, 0.01, layer_lr_decay=2.0)
    rates = {group["name"].removesuffix(".no_decay"): group["lr"] for group in groups}
    assert rates == {"top": 1.0, "encoder.2": 0.5, "encoder.1": 0.25, "features": 0.125}
    assert all(group["weight_decay"] == 0.0 for group in groups if group["name"].endswith("no_decay"))
    assert sum(len(group["params"]) for group in groups) == len(list(net.parameters()))
    unfreezing = GradualUnfreezing(1.0)
    unfreezing.groups = [params for _, params in layer_groups(net)]
    unfreezing.every_steps = 10
    for step, trainable in ((0, "top"), (15, "encoder.2"), (29, "encoder.1"), (31, "features"), (99, "features")):
        unfreezing.apply(step)
        names = [name for name, params in layer_groups(net) if params[0].requires_grad]
        order = ["top", "encoder.2", "encoder.1", "features"]
        assert sorted(names) == sorted(order[: order.index(trainable) + 1]), step


def test_slanted_triangular_schedule():
    factors = [lr_factor(step, 100, 10, "slanted_triangular", 32.0) for step in range(100)]
    assert factors[0] == pytest.approx(1 / 32) and max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 10 and factors[-1] < 0.05
    assert all(a < b for a, b in itertools.pairwise(factors[:11]))


def test_adaptive_softmax_is_a_distribution_and_its_nll_matches():
    torch.manual_seed(0)
    config = LMNetConfig(embedding_dim=8, tie_embeddings=False, softmax="adaptive", adaptive_cutoffs=[5, 20],
                                 adaptive_div_value=2.0,
                                 encoder=EncoderConfig(hidden_size=8, num_layers=1, bidirectional=False))
    net = LMNet(config, 50).eval()
    ids = torch.randint(0, 50, (2, 7))
    hidden = net(ids).hidden
    log_probs = net.logits(hidden)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 7))
    torch.testing.assert_close(net.nll(hidden, ids), -log_probs.reshape(-1, 50).gather(1, ids.reshape(-1, 1))[:, 0])
    with pytest.raises(ValueError, match="tie_embeddings: false"):
        LMNet(LMNetConfig(softmax="adaptive"), 50)
