"""Readers for labelled and unlabelled text files (JSONL, CSV/TSV, plain text; optionally gzipped).

Every problem is reported as a :class:`~toolkit.errors.DataError` naming the file and line, with what to
do about it: missing file, empty file, undecodable bytes, bad JSON, missing or empty fields.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.textrules import excerpt, text_problem
from toolkit.errors import DataError

JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
DOCSTART = "-DOCSTART-"
"""The line that opens a document in CoNLL-2003 files (``toolkit.data.conll``)."""
SNIFF_LINES = 20
"""Non-blank lines from the start of a file that a format guess (:func:`guess_format`) looks at."""
SNIFF_LINE_BYTES = 1 << 16
TAG = re.compile(r"O|[BIESLU]-\S+")
"""What a CoNLL tag column holds (IOB/BIOES)."""
LOOKS_LIKE = {"jsonl": "JSONL", "conll": "a CoNLL column file", "csv": "a CSV table", "tsv": "a TSV table",
              "text": "plain text"}
"""How messages name each kind :func:`guess_format` returns."""


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


def first_lines(path: str | Path, count: int = SNIFF_LINES) -> list[tuple[int, str]]:
    """``(line number, text)`` of the first ``count`` non-blank lines: what a format guess looks at.

    Cheap whatever the file: at most ``count`` lines of at most 64 KiB are kept; lines that are not UTF-8 (or
    cut inside a character) are left out, and an unreadable file gives what was read before the problem.
    """
    lines: list[tuple[int, str]] = []
    with open_binary(path) as handle:
        try:
            number = 0
            while len(lines) < count:
                raw = handle.readline(SNIFF_LINE_BYTES)
                if not raw:
                    break
                number += 1
                rest = raw
                while rest and not rest.endswith(b"\n") and len(rest) == SNIFF_LINE_BYTES:
                    rest = handle.readline(SNIFF_LINE_BYTES)  # the rest of a long line: skipped unread
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    continue
                text = text.removeprefix("\ufeff") if number == 1 else text
                if text.strip():
                    lines.append((number, text))
        except (OSError, EOFError):  # a truncated .gz: the readers report it
            pass
    return lines


def json_object(text: str) -> bool:
    """Whether ``text`` is one JSON object (a JSONL record)."""
    if not text.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def json_like(text: str) -> bool:
    """Whether ``text`` is JSON or was meant to be (starts like an object or an array)."""
    if text.lstrip()[:1] in ("{", "["):
        return True
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def guess_format(lines: list[tuple[int, str]]) -> tuple[str, str] | None:
    """What the first lines of a file (:func:`first_lines`) plainly are, whatever its name says.

    Returns ``(kind, evidence)`` (kind ``jsonl``: every line a JSON object; ``conll``: a ``-DOCSTART-`` line,
    or at least three lines of the same whitespace-separated columns ending in a tag; ``csv``/``tsv``: a
    header line of plain names, the delimiter on every line; ``text``: no line is JSON or looks meant to be)
    or None when the lines fit none of these.
    """
    if not lines:
        return None
    number, text = lines[0]
    if all(json_object(line) for _, line in lines):
        return "jsonl", f"line {number} is a JSON object: {excerpt(text.strip(), 30)}"
    columns = [line.split() for _, line in lines]
    if columns[0][0] == DOCSTART:
        return "conll", f"line {number} is a CoNLL {DOCSTART} line"
    widths = {len(row) for row in columns}
    if len(lines) >= 3 and len(widths) == 1 and widths != {1} and all(TAG.fullmatch(row[-1]) for row in columns):
        return "conll", (f"lines {number}–{lines[-1][0]} are {len(columns[0])} columns each, ending in a tag "
                         f"({columns[0][-1]!r})")
    for kind, delimiter in (("tsv", "\t"), ("csv", ",")):
        names = text.split(delimiter)
        if (len(lines) >= 2 and len(names) >= 2 and all(re.fullmatch(r"\w+", name.strip()) for name in names)
                and all(delimiter in line for _, line in lines)):
            return kind, f"line {number} is a header line: {excerpt(text, 30)}"
    if not any(json_like(line) for _, line in lines):
        return "text", f"line {number} is not JSON: {excerpt(text.strip(), 30)}"
    return None


def file_sha256(*paths: str | Path) -> str:
    """SHA-256 over the bytes of the given files, in order (the training-data fingerprint)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def json_record(line: str) -> dict:
    """The JSON object one JSONL line holds: the one rule for a JSONL line, in the DataModules, `evaluate` and the
    batch job (which, unlike the others, records a bad line and goes on).

    Raises:
        ValueError: why the line is not one, worded to follow a file and line number: ``not valid JSON (Expecting
            value at column 1)``, ``expected a JSON object per line, got list``.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:  # "[[[[…": Python's decoder recurses per level
        raise ValueError("not valid JSON (nested too deeply to read)") from None
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object per line, got {type(record).__name__}")
    return record


def field_text(record: dict, name: str, role: str = "text", numbers: bool = False) -> str:
    """The string in ``record[name]``: present, and a string. Whether a model can read it is
    :func:`~toolkit.data.textrules.text_problem`'s to say, which each reader applies where it reads texts (training
    data here, the batch job as its predictor screens each text).

    Args:
        role: what the field holds, for the message (``text``, ``label``, ``source``…).
        numbers: also take an integer (a label written as ``1``), as its digits.

    Raises:
        ValueError: ``missing text field 'text' (fields present: review)`` or ``field 'text' must be a string, got
            list``: worded to follow a file and line number.
    """
    if name not in record:
        present = ", ".join(sorted(map(str, record))) or "none"
        raise ValueError(f"missing {role} field {name!r} (fields present: {present})")
    value = record[name]
    if isinstance(value, str):
        return value
    if not numbers or isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
    return str(value)


def _field(record: dict, name: str, path: str | Path, line: int, role: str) -> str:
    """:func:`field_text` (numbers allowed) of a training or evaluation record, a text a model can read; a
    :class:`DataError` naming the line."""
    try:
        value = field_text(record, name, role, numbers=True)
    except ValueError as error:
        hint = f"set the {role}_field option to the right name" if name not in record else ""
        raise DataError(path, str(error), line, hint=hint) from None
    problem = text_problem(value)
    if problem is not None:
        raise DataError(path, f"field {name!r} {problem}", line)
    return value


def _not_jsonl(path: str | Path) -> str:
    """`` (the file looks like X: …)`` when its first lines are plainly another format, else ``""``."""
    guess = guess_format(first_lines(path))
    if guess is None or guess[0] == "jsonl":
        return ""
    return f"; the file looks like {LOOKS_LIKE[guess[0]]} ({guess[1]}), not JSONL"


def _jsonl_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    first = True
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        try:
            record = json_record(line)
        except ValueError as error:
            problem = str(error) + (_not_jsonl(path) if first else "")
            raise DataError(path, problem, number,
                            hint="a .jsonl file holds one JSON object per line" if first else "") from None
        first = False
        yield number, record


def _csv_records(path: str | Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    _check_header(path, delimiter)
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


def _check_header(path: str | Path, delimiter: str) -> None:
    """Refuse a CSV/TSV file whose first line is plainly JSONL, or a header of the other delimiter."""
    lines = first_lines(path, 1)
    if not lines:
        return
    number, line = lines[0]
    table = "TSV" if delimiter == "\t" else "CSV"
    if json_object(line):
        raise DataError(path, f"looks like JSONL (line {number} is a JSON object: {excerpt(line.strip(), 30)}), "
                        f"not {table}", hint="rename the file to .jsonl")
    other, found, name = ("\t", "tab", ".tsv") if delimiter == "," else (",", "comma", ".csv")
    if delimiter not in line and other in line:
        raise DataError(path, f"looks {found}-separated (its header line {excerpt(line, 30)} has no "
                        f"{'commas' if delimiter == ',' else 'tabs'}), not {table}", hint=f"rename the file to {name}")


def read_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line, record)`` from a JSONL or CSV/TSV file (CSV records map header → cell)."""
    kind = data_format(path)
    if kind == "jsonl":
        return _jsonl_records(path)
    if kind in ("csv", "tsv"):
        return _csv_records(path, CSV_SUFFIXES["." + kind])
    raise DataError(path, f"expected a .jsonl or .csv/.tsv file for labelled texts, got a {kind} file",
                    hint='one JSON object per line such as {"text": "...", "label": "..."}, or a CSV/TSV table '
                    "with a header line")


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
