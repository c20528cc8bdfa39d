"""The classifier's part of `bilstm report model`: confusion matrix, per-class scores, calibration, mistakes."""

from __future__ import annotations

from typing import Any

import torch

from toolkit.data.readers import read_labelled
from toolkit.report import figures
from toolkit.report import html as h
from toolkit.report.parts import ReportContext, TaskReport

CALIBRATION_BINS = 10


def calibration_bins(confidence: torch.Tensor, correct: torch.Tensor, bins: int = CALIBRATION_BINS
                     ) -> tuple[list[dict[str, Any]], float]:
    """Equal-width confidence bins and the expected calibration error (ECE, L1).

    A confidence falls in the bin ``[lower, upper)`` (the last bin includes 1.0), the way torchmetrics'
    ``multiclass_calibration_error`` bins; ECE is the example-weighted mean gap between each bin's accuracy and
    its mean confidence.
    """
    boundaries = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype)
    index = (torch.bucketize(confidence, boundaries, right=True) - 1).clamp(0, bins - 1)
    rows, gap = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        accuracy = float(correct[members].float().mean()) if count else 0.0
        mean_confidence = float(confidence[members].mean()) if count else 0.0
        gap += count * abs(accuracy - mean_confidence)
        rows.append({"lower": round(float(boundaries[b]), 4), "upper": round(float(boundaries[b + 1]), 4),
                     "count": count, "accuracy": round(accuracy, 6), "confidence": round(mean_confidence, 6)})
    return rows, round(gap / max(1, len(confidence)), 6)


def build(context: ReportContext) -> TaskReport:
    """Confusion matrix, per-class precision/recall/F1, reliability diagram with ECE, most confident mistakes."""
    from torchmetrics.functional.classification import multiclass_precision, multiclass_recall

    predictor, options = context.predictor, context.options
    # The same reading as ClassifyPredictor.evaluate (which has already checked labels and texts).
    examples = read_labelled(context.data_file, options["text_field"], options["label_field"])
    labels = predictor.labels
    index = {label: i for i, label in enumerate(labels)}
    gold = torch.tensor([index[example.label] for example in examples])
    probabilities = predictor.predict_proba([example.text for example in examples], options.get("batch_size", 64))
    confidence, predicted = probabilities.max(-1)
    size = len(labels)
    counts = torch.bincount(gold * size + predicted, minlength=size * size).view(size, size).tolist()

    precision = multiclass_precision(predicted, gold, size, average="none").tolist()
    recall = multiclass_recall(predicted, gold, size, average="none").tolist()
    f1 = context.metrics["per_class_f1"]  # evaluate's own per-class F1
    per_class = {label: {"precision": round(precision[i], 6), "recall": round(recall[i], 6), "f1": f1[label],
                         "support": sum(counts[i])} for i, label in enumerate(labels)}
    bins, ece = calibration_bins(confidence, predicted == gold)

    wrong = [i for i in range(len(examples)) if predicted[i] != gold[i]]
    wrong.sort(key=lambda i: -float(confidence[i]))
    mistakes = [{"line": examples[i].line, "text": h.shorten(examples[i].text), "gold": examples[i].label,
                 "predicted": labels[int(predicted[i])], "probability": round(float(confidence[i]), 6)}
                for i in wrong[: context.max_examples]]

    report = TaskReport()
    report.figures["confusion_matrix.png"] = figures.confusion_matrix(labels, counts)
    report.figures["per_class.png"] = figures.grouped_bars(
        labels, {"precision": precision, "recall": recall, "f1": [f1[label] for label in labels]},
        "per-class precision, recall and F1", "score")
    report.figures["reliability.png"] = figures.reliability(bins, ece)
    report.sections += [
        h.section("Confusion matrix",
                  h.figure("confusion_matrix.png", "gold class (rows) against predicted class (columns)"),
                  h.table(["gold \\ predicted", *labels], [[label, *row] for label, row in zip(labels, counts,
                                                                                                strict=True)])),
        h.section("Per-class scores",
                  h.table(["class", "precision", "recall", "F1", "support"],
                          [[label, *per_class[label].values()] for label in labels]),
                  h.figure("per_class.png", "precision, recall and F1 of each class"),
                  h.note("F1 is evaluate's per_class_f1; precision and recall come from torchmetrics on the same "
                         "predictions (0 where a class is never predicted).")),
        h.section("Calibration",
                  h.figure("reliability.png", f"reliability diagram, {CALIBRATION_BINS} equal-width bins"),
                  h.table(["ECE", "bins"], [[ece, CALIBRATION_BINS]]),
                  h.table(["confidence bin", "examples", "accuracy", "mean confidence"],
                          [[f"{b['lower']:.1f}–{b['upper']:.1f}", b["count"], b["accuracy"], b["confidence"]]
                           for b in bins]),
                  h.note("Confidence is the probability of the predicted class. ECE: the example-weighted mean "
                         "|accuracy − confidence| over the bins.")),
        h.section(f"Most confident mistakes ({len(mistakes)} of {len(wrong)})",
                  h.table(["line", "text", "gold", "predicted", "probability"],
                          [list(mistake.values()) for mistake in mistakes]) if mistakes
                  else h.note("No mistakes on this file.")),
    ]
    report.data = {"labels": labels, "confusion_matrix": counts, "per_class": per_class,
                   "calibration": {"ece": ece, "bins": bins}, "mistakes": mistakes, "mistakes_total": len(wrong)}
    return report
