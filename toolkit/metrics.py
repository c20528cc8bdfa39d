"""Entity-level scores with seqeval (strict matching, in the data's own tag scheme)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> dict[str, Any]:
    """Overall and per-type precision/recall/F1 (percent-free fractions) and entity counts.

    Args:
        gold: gold tag sequences.
        predicted: predicted tag sequences (same lengths).
        scheme: ``iob1``, ``iob2`` or ``bioes`` (seqeval's IOB1 / IOB2 / IOBES in strict mode).
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB1, IOB2, IOBES

    scheme_class = {"iob1": IOB1, "iob2": IOB2, "bioes": IOBES}[scheme]
    report = classification_report(gold, predicted, mode="strict", scheme=scheme_class, output_dict=True,
                                   zero_division=0)
    overall = report["micro avg"]
    types = {name: {"precision": round(float(row["precision"]), 6), "recall": round(float(row["recall"]), 6),
                    "f1": round(float(row["f1-score"]), 6), "support": int(row["support"])}
             for name, row in report.items() if not name.endswith(" avg")}
    return {"precision": round(float(overall["precision"]), 6), "recall": round(float(overall["recall"]), 6),
            "f1": round(float(overall["f1-score"]), 6), "entities": int(overall["support"]), "per_type": types}
