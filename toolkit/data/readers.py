"""Readers for labelled and unlabelled text files (JSONL, CSV/TSV, plain text; optionally gzipped).

Every problem is reported as a :class:`~toolkit.errors.DataError` naming the file and line, with what to
do about it: missing file, empty file, undecodable bytes, bad JSON, missing or empty fields.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.textrules import text_problem
from toolkit.errors import DataError

JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}


@dataclass(frozen=True)
class Example:
    """One labelled text and where it came from."""

    text: str
    label: str
    line: int


def data_format(path: str | Path) -> str:
    """``jsonl``, ``csv``, ``tsv``, ``txt`` or ``conll`` from the file name (a ``.gz`` suffix is looked through)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return suffix[1:]
    if suffix in {".conll", ".iob", ".bio", ".bioes"} or (Path(path).name.startswith("eng.") and suffix in {
        ".train", ".testa", ".testb"
    }):
        return "conll"
    if suffix in {".txt", ".text", ""}:
        return "txt"
    raise DataError(path, f"unknown file type {suffix!r}",
                    hint="use .jsonl, .csv, .tsv, .txt or .conll (optionally .gz)")


def open_binary(path: str | Path):
    """Open a (possibly gzipped) file for reading bytes; a clear error if it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def decoded_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, text without the newline)`` for each line, decoding UTF-8 line by line.

    Decoding per line lets an undecodable byte be reported with its line number. A UTF-8 byte-order mark
    opening the file is dropped; CRLF line ends are read like LF.
    """
    with open_binary(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                    yield number, text.removeprefix("\ufeff") if number == 1 else text
                except UnicodeDecodeError as error:
                    raise DataError(
                        path, f"line is not valid UTF-8 (byte {error.start})", number,
                        hint="re-encode the file as UTF-8",
                    ) from None
        except (OSError, EOFError) as error:  # e.g. a truncated or fake .gz file
            raise DataError(path, f"cannot be read: {error}") from None


def file_sha256(*paths: str | Path) -> str:
    """SHA-256 over the bytes of the given files, in order (the training-data fingerprint)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _field(record: dict, name: str, path: str | Path, line: int, role: str) -> str:
    if name not in record:
        present = ", ".join(sorted(map(str, record))) or "none"
        raise DataError(path, f"missing {role} field {name!r} (fields present: {present})", line,
                        hint=f"set the {role}_field option to the right name")
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(path, f"field {name!r} must be a string, got {type(value).__name__}", line)
    value = str(value)
    problem = text_problem(value)
    if problem is not None:
        raise DataError(path, f"field {name!r} {problem}", line)
    return value


def _jsonl_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, f"not valid JSON ({error.msg} at column {error.colno})", number) from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object per line, got {type(record).__name__}", number)
        yield number, record


def _csv_records(path: str | Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    lines = decoded_lines(path)
    # Newlines go back in so that a quoted field spanning lines keeps its line break.
    reader = csv.reader((line + "\n" for _, line in lines), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise DataError(path, f"is not valid CSV ({error})", reader.line_num) from None
    while True:
        start = reader.line_num + 1  # a record's first line (a quoted field may span several)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataError(path, f"is not valid CSV ({error})", start) from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(path, f"has {len(row)} columns but the header has {len(header)}", start,
                            hint="quote fields that contain the delimiter")
        yield start, dict(zip(header, row, strict=True))


def read_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line, record)`` from a JSONL or CSV/TSV file (CSV records map header → cell)."""
    kind = data_format(path)
    if kind == "jsonl":
        return _jsonl_records(path)
    if kind in ("csv", "tsv"):
        return _csv_records(path, CSV_SUFFIXES["." + kind])
    raise DataError(path, f"expected a .jsonl or .csv/.tsv file for labelled texts, got a {kind} file")


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label") -> list[Example]:
    """All labelled examples of a JSONL/CSV/TSV file; raises :class:`DataError` on the first bad line."""
    examples = [
        Example(_field(record, text_field, path, line, "text"), _field(record, label_field, path, line, "label"), line)
        for line, record in read_records(path)
    ]
    if not examples:
        raise DataError(path, "contains no records", hint="the file is empty or has only blank lines")
    return examples


def check_labels(examples: list[Example], known: list[str], path: str | Path) -> None:
    """Fail on the first example whose label the model does not know."""
    allowed = set(known)
    for example in examples:
        if example.label not in allowed:
            raise DataError(path, f"unknown label {example.label!r}; the model knows {sorted(allowed)}", example.line,
                            hint="fix the label or retrain with it")
