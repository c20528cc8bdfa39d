"""Tables and JSON of benchmarks/lecture_imdb.py: the lecture's reference rows, mean ± sd per row, the cost."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

REFERENCE = {  # (cell, units, bidirectional): (train accuracy, dev accuracy) after 2 epochs, lecture notes
    ("rnn_tanh", 50, True): (0.8156, 0.7662), ("rnn_tanh", 40, True): (0.8244, 0.7540),
    ("rnn_tanh", 30, True): (0.8259, 0.7874), ("rnn_tanh", 20, True): (0.8072, 0.8076),
    ("rnn_tanh", 10, True): (0.8007, 0.8016), ("rnn_tanh", 5, True): (0.7973, 0.8006),
    ("rnn_tanh", 1, True): (0.7070, 0.7822), ("lstm", 50, False): (0.8692, 0.8678),
}
REFERENCE_NOTE = "one copy of the notes gives LSTM 50 train accuracy 0.7121"


def summarise(spec: Any, runs: list[dict], full_train: int, full_dev: int, epochs: int, seeds: int) -> dict:
    """Mean ± sample sd over seeds, the reference, and the cost extrapolated to the full data."""
    train, dev = [r["train_acc"] for r in runs], [r["dev_acc"] for r in runs]
    epochs_run = [e for r in runs for e in r["epochs"]]
    n_train, n_dev = runs[0]["n_train"], runs[0]["n_dev"]
    train_s = statistics.mean(e["train_seconds"] for e in epochs_run)
    dev_s = statistics.mean(e["dev_seconds"] for e in epochs_run)
    full_epoch = train_s / n_train * full_train + dev_s / n_dev * full_dev
    ref = REFERENCE.get((spec.cell, spec.units, spec.bidirectional))
    return {
        "model": spec.name, "cell": spec.cell, "units": spec.units, "bidirectional": spec.bidirectional,
        "train_mean": round(statistics.mean(train), 4), "dev_mean": round(statistics.mean(dev), 4),
        "train_sd": round(statistics.stdev(train), 4) if len(runs) > 1 else None,
        "dev_sd": round(statistics.stdev(dev), 4) if len(runs) > 1 else None,
        "best_dev": max(e["dev_acc"] for e in epochs_run),
        "ref_train": ref[0] if ref else None, "ref_dev": ref[1] if ref else None,
        "seconds_per_run": round(statistics.mean(r["seconds"] for r in runs), 1),
        "cost": {"train_reviews": n_train, "dev_reviews": n_dev, "train_seconds_per_epoch": round(train_s, 2),
                 "dev_seconds_per_epoch": round(dev_s, 2),
                 "ms_per_train_review": round(1000 * train_s / n_train, 3),
                 "ms_per_dev_review": round(1000 * dev_s / n_dev, 3),
                 "full_epoch_seconds": round(full_epoch), "full_row_seconds": round(full_epoch * epochs * seeds)},
        "runs": runs,
    }


def _cell(mean: float, sd: float | None, ref: float | None) -> str:
    spread = f"±{sd:.4f}" if sd is not None else "±—"
    return f"{mean:.4f}{spread} ({ref:.4f})" if ref is not None else f"{mean:.4f}{spread} (—)"


def markdown_table(rows: list[dict]) -> str:
    """The results table: model | train mean±sd (ref) | dev mean±sd (ref) | best dev | seconds per run."""
    lines = ["| model | train mean±sd (ref) | dev mean±sd (ref) | best dev | s/run |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {_cell(row['train_mean'], row['train_sd'], row['ref_train'])} | "
                     f"{_cell(row['dev_mean'], row['dev_sd'], row['ref_dev'])} | {row['best_dev']:.4f} | "
                     f"{row['seconds_per_run']:.0f} |")
    return "\n".join(lines)


def cost_table(rows: list[dict], w2v_estimate: float | None, epochs: int, seeds: int) -> str:
    """Measured seconds per epoch and the full-size CPU time they imply."""
    lines = [f"| model | measured s/epoch (train n, dev n) | ms/train review | full epoch | full row "
             f"({epochs} ep × {seeds} seeds) |", "|---|---|---|---|---|"]
    total = 0.0
    for row in rows:
        cost = row["cost"]
        total += cost["full_row_seconds"]
        lines.append(f"| {row['model']} | {cost['train_seconds_per_epoch']:.1f} + {cost['dev_seconds_per_epoch']:.1f} "
                     f"({cost['train_reviews']}, {cost['dev_reviews']}) | {cost['ms_per_train_review']:.2f} | "
                     f"{cost['full_epoch_seconds'] / 60:.1f} min | {cost['full_row_seconds'] / 3600:.2f} h |")
    if w2v_estimate is not None:
        total += w2v_estimate
        lines.append(f"| word2vec (tokenise + train) | | | | {w2v_estimate / 3600:.2f} h |")
    lines.append(f"| **total** | | | | **{total / 3600:.2f} h** |")
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> None:
    """Write via a temporary file and ``os.replace``: a killed run never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
