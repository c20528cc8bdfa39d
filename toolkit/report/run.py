"""`bilstm report run`: a training run's learning curves from its Lightning ``metrics.csv``.

Lightning's ``CSVLogger`` writes one row per logging call, with only that call's columns filled: training
values every ``log_every_n_steps`` steps, the learning rate of every step (``lr-<optimizer>[/<group>]``, from
``LearningRateMonitor``), validation values once per validation, and the epoch's wall time. The columns are
therefore sparse; a value is a point ``(step, epoch, value)`` of its column, and an empty or non-finite cell is
no point. ``bilstm fit`` validates the best checkpoint once more after training; Lightning logs that in a
further epoch with no training in it, so it is reported apart ("validation after fit") instead of being drawn
as one more epoch.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolkit.data.readers import decoded_lines
from toolkit.errors import DataError
from toolkit.report import figures
from toolkit.report import html as h
from toolkit.report.figures import require_matplotlib
from toolkit.version import __version__

VERSION = re.compile(r"version_(\d+)$")
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "entropy", "bits", "error", "seconds")


@dataclass
class Column:
    """One logged value's points, in file order."""

    name: str
    points: list[tuple[int | None, int | None, float]] = field(default_factory=list)
    """``(step, epoch, value)``; step or epoch is None where the row left it empty."""
    non_finite: int = 0

    @property
    def per_epoch(self) -> bool:
        """Logged at most once per epoch (validation values, epoch aggregates, wall time)."""
        epochs = [epoch for _, epoch, _ in self.points]
        return bool(epochs) and None not in epochs and len(set(epochs)) == len(epochs)


def find_log_dir(run_dir: str | Path) -> Path:
    """The folder holding ``metrics.csv``: ``run_dir`` itself, or the latest ``*/version_N`` under it.

    ``run_dir`` may be a trainer's ``default_root_dir`` (``lightning_logs/version_N/metrics.csv`` inside), a
    logger's folder (``version_N/``), a version folder, or the ``metrics.csv`` file.
    """
    path = Path(run_dir)
    if not path.exists():
        raise DataError(path, "run directory not found")
    if path.is_file():
        if path.name == "metrics.csv":
            return path.parent
        raise DataError(path, "is a file, not a run directory", hint="give the trainer's default_root_dir, a "
                        "lightning_logs/version_N folder or its metrics.csv")
    if (path / "metrics.csv").is_file():
        return path
    found = [*path.glob("version_*/metrics.csv"), *path.glob("*/version_*/metrics.csv")]
    versions = [(int(match.group(1)), csv_path.stat().st_mtime, csv_path.parent) for csv_path in found
                if (match := VERSION.search(csv_path.parent.name))]
    if not versions:
        raise DataError(path, "has no metrics.csv (looked in ., version_*/ and */version_*/)",
                        hint="train with a CSV logger: bilstm fit logs with one unless another logger is set")
    return max(versions)[2]  # the highest version number (the latest run into this folder)


def _number(cell: str, path: Path, line: int, name: str) -> float | None:
    if not cell.strip():
        return None
    try:
        return float(cell)
    except ValueError:
        raise DataError(path, f"column {name!r} holds {cell[:40]!r}, not a number", line) from None


def read_metrics(path: Path) -> tuple[list[dict[str, float | None]], list[str]]:
    """The rows of a Lightning ``metrics.csv`` (empty cells None) and its columns.

    Raises:
        DataError: the file is missing, empty, not CSV, has no ``step`` column, or has no value at all.
    """
    reader = csv.reader(line + "\n" for _, line in decoded_lines(path))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "is empty: the run logged nothing", hint="did training start?") from None
    except csv.Error as error:
        raise DataError(path, f"is not valid CSV ({error})", 1) from None
    if "step" not in header:
        raise DataError(path, f"has no 'step' column (columns: {', '.join(header)[:200]})",
                        hint="expected the metrics.csv of Lightning's CSVLogger")
    rows = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(path, f"has {len(row)} cells but the header has {len(header)}", reader.line_num)
            rows.append({name: _number(cell, path, reader.line_num, name) for name, cell in zip(header, row,
                                                                                                 strict=True)})
    except csv.Error as error:
        raise DataError(path, f"is not valid CSV ({error})", reader.line_num) from None
    if not any(value is not None for row in rows for name, value in row.items() if name not in ("step", "epoch")):
        raise DataError(path, "has no logged values, only a header", hint="did training log anything?")
    return rows, header


def _whole(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else int(value)


def after_fit_rows(rows: list[dict[str, float | None]]) -> set[int]:
    """Rows of the validation ``bilstm fit`` runs after training: validation values in an epoch past the last
    one with any training value (a training loss, metric or learning rate) in it."""
    def trains(row: dict[str, float | None]) -> bool:
        return any(value is not None and (name.startswith(("train", "lr-"))) for name, value in row.items())

    trained = [row["epoch"] for row in rows if trains(row) and row.get("epoch") is not None]
    if not trained:
        return set()
    last = max(trained)
    return {i for i, row in enumerate(rows) if row.get("epoch") is not None and row["epoch"] > last
            and any(value is not None for name, value in row.items() if name.startswith("val"))}


def best_mode(name: str) -> str | None:
    """``min`` or ``max`` for a training/validation score; None for what has no best (learning rate, time…)."""
    lowered = name.lower()
    if not lowered.startswith(("train", "val", "test")):
        return None
    return "min" if any(word in lowered for word in LOWER_IS_BETTER) else "max"


def shown(value: float) -> float:
    """A logged float32 value to 6 significant digits (0.5400000214576721 → 0.54): what the page shows."""
    return float(f"{value:.6g}")


def summary(column: Column) -> dict[str, Any]:
    """Count, final and best value (with their step and epoch), min and max of a column."""
    kind = "lr" if column.name.startswith("lr-") else "epoch" if column.per_epoch else "step"
    record: dict[str, Any] = {"kind": kind, "values": len(column.points), "non_finite": column.non_finite}
    if not column.points:
        return record
    step, epoch, value = column.points[-1]
    record["final"] = {"value": shown(value), "step": step, "epoch": epoch}
    values = [point[2] for point in column.points]
    record.update(min=shown(min(values)), max=shown(max(values)))
    mode = best_mode(column.name)
    if mode is not None:
        pick = min if mode == "min" else max
        step, epoch, value = pick(column.points, key=lambda point: point[2])  # the first of equal values
        record["best"] = {"value": shown(value), "step": step, "epoch": epoch, "mode": mode}
    return record


def run_report(run_dir: str | Path, out: str | Path) -> list[Path]:
    """Write ``out/index.html``, the learning-curve PNGs and ``out/report.json`` for a training run.

    Returns the paths written (``index.html`` first).
    """
    log_dir = find_log_dir(run_dir)
    model_dir = Path(run_dir) / "model"
    refuse = [log_dir, *([model_dir] if (model_dir / "meta.json").is_file() else [])]
    target = h.check_out_dir(out, refuse_inside=refuse, refuse_equal=[Path(run_dir)])
    require_matplotlib()
    rows, header = read_metrics(log_dir / "metrics.csv")
    final_rows = after_fit_rows(rows)
    columns = {name: Column(name) for name in header if name not in ("step", "epoch")}
    final_validation: dict[str, float] = {}
    for index, row in enumerate(rows):
        for name, column in columns.items():
            value = row[name]
            if value is None:
                continue
            if not math.isfinite(value):
                column.non_finite += 1
            elif index in final_rows:
                final_validation[name] = shown(value)
            else:
                column.points.append((_whole(row["step"]), _whole(row.get("epoch")), value))
    summaries = {name: summary(column) for name, column in columns.items()}
    figure_files, sections = draw_curves(columns)
    config = log_dir / "config.yaml"
    config_text = config.read_text(encoding="utf-8", errors="replace") if config.is_file() else None

    table_rows = []
    for name, record in summaries.items():
        final, best = record.get("final", {}), record.get("best", {})
        table_rows.append([name, record["kind"], record["values"], final.get("value", ""), final.get("step", ""),
                           final.get("epoch", ""), best.get("value", ""), best.get("step", ""),
                           best.get("epoch", "")])
    parts = [h.section("Columns", h.table(["column", "kind", "values", "final", "at step", "at epoch", "best",
                                           "at step", "at epoch"], table_rows),
                       h.note("kind: lr = learning rate per step; step = logged every few steps; epoch = once per "
                              "epoch. Best: lowest loss/perplexity/time, highest other train/val scores; empty and "
                              "NaN cells are no points.")), *sections]
    if final_validation:
        parts.append(h.section("Validation after fit (the best checkpoint, validated again)",
                               h.key_values(final_validation)))
    parts.append(h.section("Resolved config (config.yaml)", h.pre(config_text) if config_text is not None
                           else h.note(f"no config.yaml in {log_dir}")))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    document = h.page(f"bilstm report: training run {run_dir}",
                      f"{log_dir / 'metrics.csv'} ({len(rows)} rows), bilstm-toolkit {__version__}, {created}", parts)
    data = {"report": "run", "toolkit_version": __version__, "created": created, "run_dir": str(run_dir),
            "log_dir": str(log_dir), "rows": len(rows), "columns": summaries, "final_validation": final_validation,
            "figures": sorted(figure_files), "config_yaml": str(config) if config_text is not None else None}
    return h.write_report(target, document, figure_files, data)


def draw_curves(columns: dict[str, Column]) -> tuple[dict[str, bytes], list[str]]:
    """The figures (by file name) and their page sections: loss, dev metrics and learning rate against step,
    per-epoch values against epoch, and any other per-step values."""
    def series(names: list[str], by_epoch: bool = False) -> dict[str, figures.Series]:
        chosen = {}
        for name in names:
            points = [(epoch if by_epoch else step, value) for step, epoch, value in columns[name].points]
            points = [(x, y) for x, y in points if x is not None]
            if points:
                chosen[name] = ([x for x, _ in points], [y for _, y in points])
        return chosen

    named = [name for name, column in columns.items() if column.points]
    lr = [name for name in named if name.startswith("lr-")]
    loss = [name for name in named if "loss" in name.lower() and name not in lr]
    dev = [name for name in named if name.startswith("val") and name not in loss]
    epoch = [name for name in named if columns[name].per_epoch and name not in lr]
    other = [name for name in named if name not in {*lr, *loss, *dev, *epoch}]
    plans = [
        ("loss.png", "Loss", series(loss), "training and validation loss against step",
         lambda s: figures.lines(s, "loss", "step", "loss", markers=[n for n in s if columns[n].per_epoch])),
        ("dev_metrics.png", "Validation metrics", series(dev), "every val_* column against step",
         lambda s: figures.lines(s, "validation metrics", "step", "value", markers=list(s))),
        ("learning_rate.png", "Learning rate", series(lr), "the learning rate of each parameter group, every step",
         lambda s: figures.lines(s, "learning rate", "step", "learning rate")),
        ("per_epoch.png", "Per epoch", series(epoch, by_epoch=True), "values logged once per epoch, against epoch",
         lambda s: figures.small_multiples(s, "epoch", "per-epoch values")),
        ("other_steps.png", "Other per-step values", series(other), "other values logged during training",
         lambda s: figures.small_multiples(s, "step", "other per-step values")),
    ]
    files: dict[str, bytes] = {}
    sections = []
    for name, title, chosen, caption, plot in plans:
        if chosen:
            files[name] = plot(chosen)
            sections.append(h.section(title, h.figure(name, caption)))
        elif name != "other_steps.png":
            sections.append(h.section(title, h.note("nothing of this kind was logged in this run")))
    return files, sections
