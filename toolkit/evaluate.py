"""`bilstm evaluate MODEL_DIR DATA_FILE`: score a model directory on a labelled file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from toolkit.argtypes import positive_int


def evaluate(model_dir: str | Path, data_file: str | Path, quantize: bool = False, max_chars: int | None = None,
             backend: str = "torch", **options: Any) -> dict[str, Any]:
    """Metrics of a model directory on ``data_file`` as one JSON-able dict (task-specific keys).

    ``quantize`` scores the int8 dynamic-quantized CPU model (what ``Predictor.load(..., quantize=True)`` serves);
    ``backend="onnx"`` the directory's ONNX export (``model.int8.onnx`` with ``quantize``).
    A text the model refuses (invalid Unicode, over ``max_chars``) stops the evaluation with its file and line:
    scores over a silently shortened test set would mislead.
    """
    from toolkit.predict import Predictor

    predictor = Predictor.load(model_dir, quantize=quantize, max_chars=max_chars, backend=backend)
    extra = {"quantized": True} if quantize else {}
    return {**predictor.evaluate(data_file, **options), **extra, **({"backend": backend} if backend != "torch" else {})}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir")
    parser.add_argument("data_file", help="classification: .jsonl/.csv; tagging: CoNLL; translation: source file "
                        "with the reference beside it (val.de → val.en) or .jsonl with source/target; language "
                        "model: .txt (one text per line) or .jsonl")
    parser.add_argument("--text-field", default="text", help="text field of JSONL/CSV files")
    parser.add_argument("--label-field", default="label", help="label field of JSONL/CSV files")
    parser.add_argument("--batch-size", type=positive_int,
                        help="texts per batch (default 64); a language model: the columns of the stream (default 10)")
    parser.add_argument("--quantize", action="store_true", help="score the int8 dynamic-quantized model (CPU)")
    parser.add_argument("--max-chars", type=positive_int, help="longest text accepted (default 20000)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="onnx: the directory's model.onnx via ONNX Runtime (bilstm export DIR --onnx)")


def run(args: argparse.Namespace) -> int:
    options = {"batch_size": args.batch_size} if args.batch_size else {}
    metrics = evaluate(args.model_dir, args.data_file, text_field=args.text_field, label_field=args.label_field,
                       quantize=args.quantize, max_chars=args.max_chars, backend=args.backend, **options)
    print(json.dumps(metrics))
    return 0
