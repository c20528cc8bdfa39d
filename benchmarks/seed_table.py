"""Rerun the lecture's IMDB experiment and print it beside the reference numbers.

The lecture trained a bidirectional simple RNN with 50/40/30/20/10/5/1 units and an LSTM with 50 units
for 2 epochs on IMDB reviews cut to 400 tokens, and reported train/dev accuracy. This script does the same
with the toolkit (one data module shared by every run, so the reviews are tokenised once):

    python benchmarks/seed_table.py [--output docs/results/seed_table.json]

Setup (Keras' defaults where the lecture names none): 10k-word vocabulary from the training split, 32-d
randomly initialised embeddings, reviews cut to their *last* 400 tokens (``pad_sequences`` truncates at
the front by default), orthogonal recurrent / Glorot input initialisation, last hidden states of both
directions → linear layer, Adam at 1e-3 (constant), batch 32, 2 epochs; dev = 10% of the labelled
training file (fixed seed); train accuracy is the running accuracy over the second epoch, as Keras
reports it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import pytorch_lightning as pl
import torch

from toolkit.data.classify import ClassifyData
from toolkit.nn import ClassifyNetConfig, EncoderConfig
from toolkit.tasks import ClassifyModule, OptimizerConfig

IMDB = Path(__file__).resolve().parents[2] / "shared/data/imdb/train.jsonl.gz"
REFERENCE = {  # (cell, units): (train accuracy, dev accuracy) after 2 epochs, from the lecture
    ("rnn_tanh", 50): (0.8156, 0.7662), ("rnn_tanh", 40): (0.8244, 0.7540), ("rnn_tanh", 30): (0.8259, 0.7874),
    ("rnn_tanh", 20): (0.8072, 0.8076), ("rnn_tanh", 10): (0.8007, 0.8016), ("rnn_tanh", 5): (0.7973, 0.8006),
    ("rnn_tanh", 1): (0.7070, 0.7822), ("lstm", 50): (0.8692, 0.8678),
}


class EpochDevAccuracy(pl.Callback):
    """Collects dev accuracy after every epoch (the lecture also quotes the peak)."""

    def __init__(self) -> None:
        self.history: list[float] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.history.append(float(trainer.callback_metrics["val_acc"]))


def run_one(data: ClassifyData, cell: str, units: int, epochs: int, seed: int) -> dict:
    pl.seed_everything(seed, verbose=False)
    model = ClassifyModule(
        network=ClassifyNetConfig(embedding_dim=32,
                                 encoder=EncoderConfig(cell=cell, hidden_size=units, init="orthogonal"),
                                 pooling="last"),
        optimizer=OptimizerConfig(lr=1e-3, weight_decay=0.0, schedule="constant", warmup_fraction=0.0),
        data_info=data.data_info,
    )
    dev = EpochDevAccuracy()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[dev],
                         num_sanity_val_steps=0)
    started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return {"cell": cell, "units": units, "train_acc": round(float(trainer.callback_metrics["train_acc"]), 4),
            "dev_acc": round(dev.history[-1], 4), "dev_acc_per_epoch": [round(v, 4) for v in dev.history],
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-file", default=str(IMDB))
    parser.add_argument("--runs", default="rnn_tanh:50,rnn_tanh:40,rnn_tanh:30,rnn_tanh:20,rnn_tanh:10,rnn_tanh:5,"
                        "rnn_tanh:1,lstm:50", help="comma-separated cell:units")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=400)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, default=1, help="repeat each run with seeds seed, seed+1, …; "
                        "print mean ± sample standard deviation (simple RNNs over 400 steps vary a lot by seed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = ClassifyData(train_file=args.train_file, max_vocab=10_000, max_tokens=args.max_tokens,
                                  truncate="tail", batch_size=32, eval_batch_size=256)
    data.setup("fit")
    rows = []
    print(f"{'model':<14} {'train':>15} {'(ref)':>7} {'dev':>15} {'(ref)':>7} {'best dev':>9} {'time':>7}")
    for spec in args.runs.split(","):
        cell, units = spec.split(":")
        runs = [run_one(data, cell, int(units), args.epochs, args.seed + k) for k in range(args.seeds)]
        ref_train, ref_dev = REFERENCE.get((cell, int(units)), (float("nan"), float("nan")))
        train, dev = [r["train_acc"] for r in runs], [r["dev_acc"] for r in runs]
        row = {"cell": cell, "units": int(units), "runs": runs, "ref_train": ref_train, "ref_dev": ref_dev,
               "train_mean": statistics.mean(train), "dev_mean": statistics.mean(dev),
               "train_sd": statistics.stdev(train) if len(runs) > 1 else 0.0,
               "dev_sd": statistics.stdev(dev) if len(runs) > 1 else 0.0,
               "best_dev": max(v for r in runs for v in r["dev_acc_per_epoch"]),
               "seconds": sum(r["seconds"] for r in runs)}
        rows.append(row)
        name = f"{'BiRNN' if cell.startswith('rnn') else 'BiLSTM'} {units}"
        print(f"{name:<14} {row['train_mean']:>7.4f}±{row['train_sd']:.4f} {ref_train:>7.4f} "
              f"{row['dev_mean']:>7.4f}±{row['dev_sd']:.4f} {ref_dev:>7.4f} {row['best_dev']:>9.4f} "
              f"{row['seconds']:>6.0f}s", flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({
            "date": date.today().isoformat(), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "torch": torch.__version__, "args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
