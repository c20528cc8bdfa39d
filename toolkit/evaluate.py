"""`bilstm evaluate MODEL_DIR DATA_FILE`: score a model directory on a labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.data.readers import check_labels, read_labelled
from toolkit.predict import Predictor


def evaluate_classifier(predictor: Any, data_file: str | Path, text_field: str = "text",
                        label_field: str = "label", batch_size: int = 64) -> dict[str, Any]:
    """Accuracy, macro-F1 (torchmetrics) and per-class F1 of a classifier on a JSONL/CSV file."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    examples = read_labelled(data_file, text_field, label_field)
    check_labels(examples, predictor.labels, data_file)
    index = {label: i for i, label in enumerate(predictor.labels)}
    target = torch.tensor([index[example.label] for example in examples])
    predicted = predictor.predict_proba([example.text for example in examples], batch_size).argmax(-1)
    classes = len(predictor.labels)
    per_class = multiclass_f1_score(predicted, target, classes, average="none").tolist()
    return {
        "accuracy": round(multiclass_accuracy(predicted, target, classes, average="micro").item(), 6),
        "macro_f1": round(multiclass_f1_score(predicted, target, classes, average="macro").item(), 6),
        "n": len(examples),
        "per_class_f1": {label: round(value, 6) for label, value in zip(predictor.labels, per_class, strict=True)},
    }


def evaluate(model_dir: str | Path, data_file: str | Path, **options: Any) -> dict[str, Any]:
    """Metrics of a model directory on ``data_file`` as one JSON-able dict (task-specific keys)."""
    predictor = Predictor.load(model_dir)
    if predictor.task == "classify":
        return evaluate_classifier(predictor, data_file, **options)
    raise NotImplementedError(f"evaluation for task {predictor.task!r}")
