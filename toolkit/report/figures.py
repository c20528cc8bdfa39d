"""matplotlib figures for the reports, each returned as PNG bytes.

Figures are drawn on matplotlib's object-oriented API with an explicit Agg canvas: no pyplot, so no global
figure registry, no backend selection that could open a window, and nothing left behind between reports.
Texts on the figures come from data files and models (tokens, labels), so math-text parsing is switched off:
a token such as ``$5`` must show as written, not fail as an unbalanced formula.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from toolkit.errors import ToolkitError

Series = tuple[Sequence[float], Sequence[float]]
"""``(x values, y values)`` of one curve."""

INSTALL_HINT = "pip install 'bilstm-toolkit[plot]'"


def require_matplotlib() -> None:
    """Fail with one line (what to install) when matplotlib is missing: it is an optional extra."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ToolkitError(f"bilstm report draws its figures with matplotlib, which is not installed: "
                           f"{INSTALL_HINT}") from None


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing glyphs of a script the default font lacks: drawn as boxes
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _text_safe(texts: Sequence[str], width: int = 24) -> list[str]:
    """Labels for axes: long ones shortened (the tables hold the full text)."""
    return [text if len(text) <= width else text[: width - 1] + "…" for text in texts]


def draw(function: Callable[..., bytes]) -> Callable[..., bytes]:
    """Run a drawing function with math text off: a text object takes the setting when it is created."""

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> bytes:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return function(*args, **kwargs)

    return wrapped


@draw
def confusion_matrix(labels: Sequence[str], counts: Sequence[Sequence[int]]) -> bytes:
    """Gold (rows) × predicted (columns) counts, each cell annotated with its count."""
    size = len(labels)
    side = min(max(4.0, 0.6 * size + 2), 16.0)
    figure = _figure(side + 1, side)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = list(range(size))
    axes.set_xticks(ticks, _text_safe(labels), rotation=45 if size > 4 else 0, ha="right" if size > 4 else "center")
    axes.set_yticks(ticks, _text_safe(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    peak = max((max(row) for row in counts), default=0)
    if size <= 30:  # beyond that the numbers would overlap; the table in report.json has them
        for row in range(size):
            for column in range(size):
                value = counts[row][column]
                axes.text(column, row, str(value), ha="center", va="center", fontsize=8,
                          color="white" if peak and value > peak / 2 else "black")
    axes.set_title("confusion matrix")
    return _png(figure)


@draw
def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
                 ylim: tuple[float, float] | None = (0.0, 1.0)) -> bytes:
    """One group of bars per name in ``groups`` (e.g. a class), one bar per series (e.g. precision/recall/F1)."""
    count = max(1, len(series))
    width = 0.8 / count
    figure = _figure(min(max(5.0, 0.5 * len(groups) * count + 2), 18.0), 4)
    axes = figure.add_subplot()
    for position, (name, values) in enumerate(series.items()):
        offsets = [group + (position - (count - 1) / 2) * width for group in range(len(groups))]
        axes.bar(offsets, values, width, label=name)
    axes.set_xticks(range(len(groups)), _text_safe(groups), rotation=45 if len(groups) > 6 else 0,
                    ha="right" if len(groups) > 6 else "center")
    if ylim is not None:
        axes.set_ylim(*ylim)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if len(series) > 1:
        axes.legend(loc="lower right", fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


@draw
def reliability(bins: Sequence[Mapping[str, Any]], ece: float) -> bytes:
    """Reliability diagram: accuracy against mean confidence per confidence bin, with the diagonal of a
    perfectly calibrated model; bar widths are the bins, the count of each bin is written above it."""
    figure = _figure(5.5, 5)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    filled = [b for b in bins if b["count"]]
    axes.bar([b["lower"] for b in filled], [b["accuracy"] for b in filled],
             [b["upper"] - b["lower"] for b in filled], align="edge", edgecolor="black", alpha=0.7, label="accuracy")
    axes.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="tab:red",
              label="mean confidence")
    for b in filled:
        axes.text((b["lower"] + b["upper"]) / 2, min(b["accuracy"] + 0.02, 0.97), str(b["count"]), ha="center",
                  fontsize=7)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (probability of the predicted class)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"reliability diagram (ECE {ece:.4f})")
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


@draw
def lines(series: Mapping[str, Series], title: str, xlabel: str, ylabel: str, markers: Sequence[str] = (),
          log_y: bool = False) -> bytes:
    """Curves against a shared x axis; names in ``markers`` are drawn with dots (sparse series such as
    validation values), the others as plain lines."""
    figure = _figure(8, 4.5)
    axes = figure.add_subplot()
    for name, (xs, ys) in series.items():
        style = {"marker": "o", "markersize": 4} if name in markers or len(xs) == 1 else {}
        axes.plot(list(xs), list(ys), label=name, **style)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if log_y:
        from matplotlib.ticker import LogFormatter

        axes.set_yscale("log")
        # The default log-axis labels are math text ("10^{1}"), which is switched off here: plain numbers instead.
        axes.yaxis.set_major_formatter(LogFormatter())
        axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    axes.grid(alpha=0.3)
    if series:
        axes.legend(fontsize=8, loc="best", ncol=2 if len(series) > 6 else 1)
    return _png(figure)


@draw
def small_multiples(series: Mapping[str, Series], xlabel: str, title: str) -> bytes:
    """One small plot per series (values with different units: seconds, accuracies, losses…)."""
    names = list(series)
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure = _figure(4 * columns, 3 * rows)
    figure.suptitle(title)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        xs, ys = series[name]
        axes.plot(list(xs), list(ys), marker="o", markersize=3)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel(xlabel, fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    return _png(figure)


@draw
def bucket_bars(buckets: Sequence[str], values: Sequence[float], counts: Sequence[int], title: str, xlabel: str,
                ylabel: str) -> bytes:
    """One bar per bucket (e.g. a source length range), its example count written on it."""
    figure = _figure(max(5.0, 0.9 * len(buckets) + 2), 4)
    axes = figure.add_subplot()
    bars = axes.bar(range(len(buckets)), values, color="tab:blue")
    for bar, count in zip(bars, counts, strict=True):
        axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={count}", ha="center", va="bottom",
                  fontsize=8)
    axes.set_xticks(range(len(buckets)), list(buckets))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


MAX_HEATMAP_TOKENS = 80
"""Longest axis of an attention heatmap; longer sentences show their first tokens (the JSON holds all)."""


@draw
def heatmap(matrix: Sequence[Sequence[float]], columns: Sequence[str], rows: Sequence[str], title: str) -> bytes:
    """Attention weights: one row per output token, one column per source token."""
    matrix = [list(row[:MAX_HEATMAP_TOKENS]) for row in matrix[:MAX_HEATMAP_TOKENS]]
    columns, rows = list(columns[:MAX_HEATMAP_TOKENS]), list(rows[:MAX_HEATMAP_TOKENS])
    width = min(max(4.0, 0.32 * len(columns) + 2.5), 28.0)
    height = min(max(3.0, 0.3 * len(rows) + 2), 28.0)
    figure = _figure(width, height)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_xticks(range(len(columns)), _text_safe(columns, 16), rotation=90, fontsize=8)
    axes.set_yticks(range(len(rows)), _text_safe(rows, 16), fontsize=8)
    axes.set_xlabel("source subwords")
    axes.set_ylabel("output subwords")
    axes.set_title(title, fontsize=9)
    return _png(figure)
