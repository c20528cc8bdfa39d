"""Streaming input for batch labelling: windows of records with byte positions; bad lines become errors.

The rules for a line are ``toolkit.data``'s, as training and `evaluate` read them: a JSONL line's object and text
field (:func:`~toolkit.data.readers.json_record`, :func:`~toolkit.data.readers.field_text`), CoNLL sentences
(:class:`~toolkit.data.conll.SentenceGrouper`). What differs is the reading: those readers stop with a
:class:`DataError` at the first bad line (right for training data, wrong for a job that has to go on) and
know no byte offsets, which a resumable job needs to seek back to where it stopped; this one reads the bytes
itself, line by line, and turns a bad line into an errors-file record.

A *window* is the job's unit of work and of commit: ``window_size`` input lines for .txt/.jsonl (blank and
bad lines included), ``window_size`` sentences (and ``-DOCSTART-`` lines) for CoNLL, or fewer once the window
holds ``WINDOW_BYTES`` of input. A line over ``max_line_bytes`` is streamed past (hashed, never held) and
reported as a bad line, so neither one line nor one window can take unbounded memory. Where a window ends
depends only on the bytes from its start, so a job resumed at a window boundary, or a data-parallel rank
that takes every k-th window, cuts the input exactly as one uninterrupted run does: the same windows, the
same length-sorted batches, the same output bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.data.conll import Block, DocumentStart, SentenceGrouper, Spoiled, not_columns
from toolkit.data.readers import (
    LOOKS_LIKE,
    data_format,
    field_text,
    first_lines,
    guess_format,
    json_like,
    json_record,
    open_binary,
)
from toolkit.errors import DataError
from toolkit.registry import TASKS

KINDS = ("txt", "jsonl", "conll")
HASH_BLOCK = 1 << 20
BOM = "\ufeff"
WINDOW_BYTES = 32 << 20
"""A window ends early once it holds this much input (a window of 4,096 lines of 100 kB each would be 400 MB)."""
DOCUMENT_WINDOWS = 8
"""With ``whole_documents``, a window holds at most this many windows' worth of sentences."""
MAX_LINE_BYTES = 8 << 20
"""Default longest line read; longer ones become errors-file records (configurable per reader)."""


@dataclass(frozen=True)
class Position:
    """Where a window starts: its number, the byte offset in the (decompressed) input and the lines before it."""

    window: int = 0
    offset: int = 0
    line: int = 0


@dataclass(frozen=True)
class Text:
    """A text to label (.txt line or .jsonl field) and its 1-based line number."""

    line: int
    text: str


@dataclass(frozen=True)
class Sentence:
    """A CoNLL sentence: its first line number, original token lines (no newline) and tokens (first column)."""

    line: int
    lines: list[str]
    tokens: list[str]


@dataclass(frozen=True)
class DocStart:
    """A ``-DOCSTART-`` line, written back to CoNLL output as it is (with an ``O`` tag)."""

    line: int
    raw: str


@dataclass(frozen=True)
class Bad:
    """A line that cannot be labelled, and why; it goes to the errors file and the job goes on."""

    line: int
    reason: str


Item = Text | Sentence | DocStart | Bad


@dataclass
class Window:
    """The records between two positions of the input, in input order."""

    start: Position
    end: Position
    items: list[Item] = field(default_factory=list)
    digest: str = ""
    """SHA-256 of the input's bytes before ``end.offset`` (checked when a job resumes there)."""

    @property
    def index(self) -> int:
        return self.start.window


def input_kind(path: str | Path) -> str:
    """``txt``, ``jsonl`` or ``conll`` from the file name; a clear error for anything else."""
    kind = data_format(path)
    if kind not in KINDS:
        raise DataError(path, f"cannot label a {kind} file", hint="use .txt (one text per line), .jsonl or .conll")
    return kind


def reads_tokens(task: str) -> bool:
    """Whether a ``task`` model also takes pre-tokenised sentences (so it labels CoNLL files): its registry entry's
    input kind, never its name."""
    return TASKS[task].input_kind == "tokens"


def _reads(task: str, text_field: str) -> str:
    """What a ``task`` model labels, for messages."""
    texts = f".jsonl (one JSON object per line, the text in {text_field!r})"
    if reads_tokens(task):
        return (f"a {task!r} model reads CoNLL column files of pre-tokenised sentences (.conll: token first, one "
                f"sentence per blank-line block) or .txt (one raw text per line) or {texts}")
    return f"a {task!r} model reads .txt (one raw text per line) or {texts}"


def _rename(kind: str, task: str) -> str:
    """What to do with a file of ``kind`` (as guessed) that a ``task`` model should label."""
    if kind == "jsonl":
        return "rename the file to .jsonl"
    if kind == "conll":
        if reads_tokens(task):
            return "rename the file to .conll"
        return "only a model that reads pre-tokenised sentences labels CoNLL files (a tagger)"
    if kind in ("csv", "tsv"):
        return "convert it to .jsonl (one object per line) or .txt"
    return "rename the file to .txt"


def check_looks_like(path: str | Path, kind: str, task: str, text_field: str = "text") -> None:
    """Refuse an input whose first lines are plainly not what its name says, naming both formats.

    Only plain mismatches are refused, judged on the first non-blank lines (``first_lines``): a .txt whose
    lines are all JSON objects or CoNLL columns (the JSON or the token lines would be labelled as texts), a
    .jsonl in which no line is, or was meant to be, JSON (every line would be an error), and a CoNLL file
    that is JSONL or plain text (its words would be tagged as tokens). A broken line among good ones stays an
    errors-file record.

    Raises:
        DataError: ``looks like X (evidence), but a .Y file is read as …; <what the model reads>: <what to do>``.
    """
    lines = first_lines(path)
    guess = guess_format(lines)
    if kind == "txt" and guess is not None and guess[0] in ("jsonl", "conll"):
        seems, evidence = guess
        read_as = "one raw text per line (the whole line is labelled)"
    elif kind == "jsonl" and lines and not any(json_like(line) for _, line in lines):
        seems, evidence = guess if guess is not None else ("text", f"line {lines[0][0]} is not JSON")
        read_as = "one JSON object per line (every line here would be an error)"
    elif kind == "conll" and (instead := not_columns(path)) is not None:
        seems, evidence = instead
        read_as = "one token per line (its words would be tagged as tokens)"
    else:
        return
    name = "CoNLL" if kind == "conll" else f".{kind}"
    raise DataError(path, f"looks like {LOOKS_LIKE[seems]} ({evidence}), but a {name} file is read as {read_as}; "
                    f"{_reads(task, text_field)}", hint=_rename(seems, task))


def _decode(raw: bytes) -> tuple[str | None, str]:
    """``(text without the newline, "")`` or ``(None, reason)`` for bytes that are not UTF-8."""
    try:
        return raw.decode("utf-8").rstrip("\r\n"), ""
    except UnicodeDecodeError as error:
        return None, f"line is not valid UTF-8 (byte {error.start})"


def _json_text(line: str, text_field: str) -> str:
    """The text of one .jsonl line (training's rules: an object with a string field; whether the model can read
    the text is the job's screen to say); raises ValueError with the reason when it has none."""
    record = json_record(line)
    try:
        return field_text(record, text_field)
    except ValueError as error:
        if text_field not in record:
            raise ValueError(f"{error}; set --text-field") from None
        raise


def _conll_item(piece: Block | DocumentStart | Spoiled) -> Item:
    if isinstance(piece, Block):
        return Sentence(piece.first_line, piece.lines, [columns[0] for columns in piece.columns])
    if isinstance(piece, DocumentStart):
        return DocStart(piece.line, piece.raw)
    return Bad(piece.line, piece.reason)


class InputReader:
    """Reads one input file as a stream of :class:`Window` objects, holding one window at a time.

    Args:
        path: .txt (one text per line; blank lines skipped), .jsonl (``text_field``; blank lines skipped)
            or a CoNLL column file (first column = token); optionally gzipped.
        text_field: the .jsonl field holding the text.
        window_size: lines (.txt/.jsonl) or sentences (CoNLL) per window.
        max_line_bytes: longest line read (bytes, newline excluded); a longer line becomes a :class:`Bad` record.
        whole_documents: CoNLL only, for taggers with document context: a window that has its ``window_size``
            sentences goes on to the end of the document (its next ``-DOCSTART-`` line), so every sentence is
            read beside its neighbours; a document past ``DOCUMENT_WINDOWS`` windows' worth of sentences (or
            the byte limit) is cut there, and the sentences at the cut see context on one side only.
    """

    def __init__(self, path: str | Path, text_field: str = "text", window_size: int = 4096,
                 max_line_bytes: int = MAX_LINE_BYTES, whole_documents: bool = False) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {window_size}")
        self.path = Path(path)
        self.kind = input_kind(path)
        self.text_field = text_field
        self.window_size = window_size
        self.max_line_bytes = max_line_bytes
        self.whole_documents = whole_documents and self.kind == "conll"

    def _items(self, number: int, raw: bytes | None, conll: SentenceGrouper) -> tuple[Sequence[Item], int]:
        """Items completed by one line (None: a line over the length limit), and how many window units it completes."""
        if raw is None:
            text, reason = None, (f"line is longer than {self.max_line_bytes} bytes; it was skipped unread "
                                  "(split it, or raise --max-chars, which raises this limit too)")
        else:
            text, reason = _decode(raw)
            if number == 1 and text is not None:
                text = text.removeprefix(BOM)  # a UTF-8 byte-order mark opening the file is not text
        if self.kind == "conll":
            pieces = conll.add(number, text, reason)
            return ([_conll_item(piece) for piece in pieces], len(pieces)) if pieces else ((), 0)
        if text is None:
            return [Bad(number, reason)], 1
        if not text.strip():
            return [], 1
        if self.kind == "txt":
            return [Text(number, text)], 1
        try:
            return [Text(number, _json_text(text, self.text_field))], 1
        except ValueError as error:
            return [Bad(number, str(error))], 1

    def windows(self, start: Position | None = None, check_prefix: Callable[[str], None] | None = None,
                keep: Callable[[int], bool] | None = None) -> Iterator[Window]:
        """Windows from ``start`` (a position a previous pass reported) to the end of the input.

        Args:
            start: where to begin; the bytes before it are hashed (not parsed) so the digests stay cumulative.
            check_prefix: called with the SHA-256 of the bytes before ``start`` before anything is yielded
                (a resumed job refuses to go on over a changed input).
            keep: which window numbers to yield (a data-parallel rank's share); the others are read and
                counted, not yielded.
        """
        start = start or Position()
        digest = hashlib.sha256()
        with open_binary(self.path) as handle:
            remaining = start.offset
            while remaining:
                block = handle.read(min(HASH_BLOCK, remaining))
                if not block:
                    break
                digest.update(block)
                remaining -= len(block)
            if check_prefix is not None:
                check_prefix(digest.hexdigest())
            elif remaining:
                raise DataError(self.path, f"is shorter than the start offset {start.offset}")
            yield from self._scan(handle, start, digest, keep or (lambda _: True))

    def _lines(self, handle, digest) -> Iterator[tuple[bytes | None, int]]:
        """``(line, or None if it is over the limit; bytes it took)`` per input line, each byte hashed into
        ``digest`` as it is read: an over-long line is streamed past, never held whole."""
        limit = self.max_line_bytes + 2  # room for "\r\n"
        while True:
            raw = handle.readline(limit)
            if not raw:
                return
            digest.update(raw)
            if raw.endswith(b"\n") or len(raw) < limit:
                yield raw, len(raw)
                continue
            size = len(raw)
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(HASH_BLOCK)
                digest.update(raw)
                size += len(raw)
            yield None, size

    def _window_ends(self, units: int, completed: int, size: int, items: Sequence[Item]) -> bool:
        """Whether the window ends after this line (which completed ``items``): it depends only on the bytes since
        the window's start, so every pass cuts the input alike."""
        if completed and size >= WINDOW_BYTES:
            return True
        if not self.whole_documents:
            return units >= self.window_size
        at_document_start = bool(items) and isinstance(items[-1], DocStart)
        return (units >= self.window_size and at_document_start) or units >= DOCUMENT_WINDOWS * self.window_size

    def _scan(self, handle, start: Position, digest, keep: Callable[[int], bool]) -> Iterator[Window]:
        window = Window(start, start)
        offset, number, units, size = start.offset, start.line, 0, 0
        conll = SentenceGrouper(self.max_line_bytes)
        try:
            for raw, length in self._lines(handle, digest):
                offset += length
                size += length
                number += 1
                items, completed = self._items(number, raw, conll)
                window.items.extend(items)
                units += completed
                if self._window_ends(units, completed, size, items):
                    window.end = Position(window.index + 1, offset, number)
                    window.digest = digest.hexdigest()
                    if keep(window.index):
                        yield window
                    window, units, size = Window(window.end, window.end), 0, 0
            window.items.extend(_conll_item(piece) for piece in conll.close())
        except (OSError, EOFError) as error:  # e.g. a truncated .gz file
            raise DataError(self.path, f"cannot be read after line {number}: {error}") from None
        if offset > window.start.offset:
            window.end = Position(window.index + 1, offset, number)
            window.digest = digest.hexdigest()
            if keep(window.index):
                yield window
