"""`bilstm label`'s records for the inputs a Ray test labels, and the comparison of Ray's with them: the same
records, labels and tags equal, scores and perplexities within :data:`TOLERANCE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.label import label_file
from tests.pipelines.test_batch_label import one_torch_thread

TOLERANCE = 1e-6


def reference(model_dir: Path, path: Path, folder: Path) -> tuple[list[dict], list[dict]]:
    """`bilstm label`'s records and errors for one input file (the function the command runs), written in
    ``folder`` (never beside the input: a rerun would list them as inputs)."""
    folder.mkdir(exist_ok=True)
    output = folder / f"{path.name}.{len(list(folder.iterdir()))}.jsonl"
    with one_torch_thread():
        label_file(model_dir, path, output, progress=False)
    errors = Path(f"{output}.errors.jsonl")
    return read_jsonl(output), read_jsonl(errors) if errors.exists() else []


def predictions(model_dir: Path, texts: list[str], folder: Path) -> dict[str, dict]:
    """`bilstm label`'s record of each text (without its line), from one job over all of them (one per line)."""
    folder.mkdir(exist_ok=True)
    every = folder / "every_text.txt"
    every.write_text("\n".join(texts) + "\n", encoding="utf-8")
    records, errors = reference(model_dir, every, folder)
    assert errors == []
    return {record["text"]: {"text": record["text"], **record} for record in records}


def expected(by_text: dict[str, dict], lines: dict[int, str]) -> list[dict]:
    return [{**by_text[text], "line": line} for line, text in lines.items()]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def close(got: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        return isinstance(got, float) and abs(got - expected) <= TOLERANCE
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            close(got[key], expected[key]) for key in expected)
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(close, got, expected))
    return got == expected


def assert_same(got: list[dict], expected: list[dict], source: str) -> None:
    """Ray's records of one file = `bilstm label`'s, plus their ``file``."""
    assert [record.pop("file") for record in got] == [source] * len(got)
    assert [record["line"] for record in got] == [record["line"] for record in expected]
    mismatched = [(g, e) for g, e in zip(got, expected, strict=True) if not close(g, e)]
    assert not mismatched, mismatched[:2]


def parquet_records(table: pa.Table) -> list[dict]:
    """Parquet rows in `bilstm label`'s JSON form: the map back to a dict, a false flag left out."""
    rows = table.to_pylist()
    for row in rows:
        if "probabilities" in row:
            row["probabilities"] = dict(row["probabilities"])
        for flag in ("input_truncated", "truncated"):  # a translation's `truncated`, as its to_dict()
            if row.get(flag) is False:
                del row[flag]
    return rows

