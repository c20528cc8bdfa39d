"""`bilstm evaluate MODEL_DIR DATA_FILE`: score a model directory on a labelled file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def evaluate(model_dir: str | Path, data_file: str | Path, **options: Any) -> dict[str, Any]:
    """Metrics of a model directory on ``data_file`` as one JSON-able dict (task-specific keys)."""
    from toolkit.predict import Predictor

    return Predictor.load(model_dir).evaluate(data_file, **options)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir")
    parser.add_argument("data_file", help="classification: .jsonl/.csv; tagging: CoNLL; translation: source file "
                        "with the reference beside it (val.de → val.en) or .jsonl with source/target")
    parser.add_argument("--text-field", default="text", help="text field of JSONL/CSV files")
    parser.add_argument("--label-field", default="label", help="label field of JSONL/CSV files")
    parser.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    metrics = evaluate(args.model_dir, args.data_file, text_field=args.text_field, label_field=args.label_field,
                       batch_size=args.batch_size)
    print(json.dumps(metrics))
    return 0
