"""Batch labelling: a model directory + an input file → a JSONL file of predictions (input order)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.data.readers import data_format, decoded_lines
from toolkit.errors import DataError
from toolkit.predict import Predictor

WINDOW = 4096  # texts read, length-sorted and predicted together; bounds memory


def read_texts(path: str | Path, text_field: str = "text") -> Iterator[tuple[int, str]]:
    """``(line, text)`` from a .txt (one text per line) or .jsonl (``text_field``) file; blank lines skipped."""
    kind = data_format(path)
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        if kind == "txt":
            yield number, line
        elif kind == "jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(path, f"not valid JSON ({error.msg})", number) from None
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(path, f"missing string field {text_field!r}", number, hint="set --text-field")
            yield number, text
        else:
            raise DataError(path, f"cannot label a {kind} file", hint="use .txt or .jsonl")


def _windows(records: Iterator[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    window: list[tuple[int, str]] = []
    for record in records:
        window.append(record)
        if len(window) == WINDOW:
            yield window
            window = []
    if window:
        yield window


def label_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path,
               text_field: str = "text", batch_size: int = 64) -> dict[str, Any]:
    """Label every text of ``input_path`` into JSONL at ``output_path`` (written atomically)."""
    predictor = Predictor.load(model_dir)
    output = Path(output_path)
    partial = output.with_name(output.name + ".partial")
    count = 0
    with open(partial, "w", encoding="utf-8") as sink:
        for window in _windows(read_texts(input_path, text_field)):
            predictions = predictor.predict([text for _, text in window], batch_size)
            for (line, text), prediction in zip(window, predictions, strict=True):
                sink.write(json.dumps({"line": line, "text": text, **prediction.to_dict()}, ensure_ascii=False) + "\n")
            count += len(window)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(partial, output)
    return {"output": str(output), "records": count}
