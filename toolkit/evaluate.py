"""`bilstm evaluate MODEL_DIR DATA_FILE`: score a model directory on a labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.predict import Predictor


def evaluate(model_dir: str | Path, data_file: str | Path, **options: Any) -> dict[str, Any]:
    """Metrics of a model directory on ``data_file`` as one JSON-able dict (task-specific keys)."""
    return Predictor.load(model_dir).evaluate(data_file, **options)
