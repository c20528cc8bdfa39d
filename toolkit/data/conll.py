"""CoNLL-style column files: CoNLL-2003 (``token POS chunk NER``, ``-DOCSTART-`` lines) and generic ones.

A sentence is a run of non-blank lines; a ``-DOCSTART-`` line starts a new document. The token and tag
columns are configurable (tag column ``-1`` = last). Every sentence keeps its original lines so a
labelling job can write them back token for token with a predicted column added. A file that is plainly
something else (JSONL, one text per line) is named as such instead of as a column-count mismatch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.data.readers import DOCSTART, LOOKS_LIKE, TAG, decoded_lines, first_lines, guess_format, json_object
from toolkit.data.tagschemes import split_tag
from toolkit.data.textrules import excerpt
from toolkit.errors import DataError

__all__ = ["DOCSTART", "Block", "ColumnFormat", "DocumentStart", "Sentence", "SentenceGrouper", "Spoiled",
           "iter_conll", "not_columns", "read_conll"]

CONLL_HINT = ("expected a CoNLL column file: one token per line, token first and the tag last, a blank line "
              "after each sentence")


@dataclass
class Sentence:
    """One sentence of a column file."""

    tokens: list[str]
    tags: list[str] | None
    lines: list[str] = field(repr=False)
    """The original token lines (without newline), for writing predictions back."""
    first_line: int = 0
    document: int = 0


@dataclass
class ColumnFormat:
    """Which columns hold the token and the tag."""

    token_column: int = 0
    tag_column: int = -1
    """Column of the gold tag (-1 = last); ignored when reading unlabelled text."""


@dataclass(frozen=True)
class Block:
    """A sentence as read: its first line's number, its lines (without newline) and their whitespace-split columns.

    A sentence's lines are consecutive, so ``lines[i]`` is line ``first_line + i``.
    """

    first_line: int
    lines: list[str]
    columns: list[list[str]]


@dataclass(frozen=True)
class DocumentStart:
    """A ``-DOCSTART-`` line: it ends the sentence before it and is no part of a sentence."""

    line: int
    raw: str


@dataclass(frozen=True)
class Spoiled:
    """A sentence that cannot be read: the line where it went wrong, and why (its first line is in the reason)."""

    line: int
    reason: str


Piece = Block | DocumentStart | Spoiled
NOTHING: tuple[Piece, ...] = ()


class SentenceGrouper:
    """Groups a column file's lines into sentences as they are read, one line at a time: the rule every reader of
    CoNLL files shares (:func:`iter_conll`, which the DataModules and `evaluate` read through, and the batch
    job, which reads line by line to know each line's byte offset).

    A blank line ends a sentence; a ``-DOCSTART-`` line ends one and is a piece of its own; any other line is a
    token line of the current sentence. A line that could not be read (``add(number, None, reason)``: not
    UTF-8, too long) spoils its whole sentence, which comes out as one :class:`Spoiled` piece; so does a
    sentence longer than ``max_chars`` characters, whose lines stop being kept once it gets there: a file with
    no blank lines cannot grow one sentence without bound.
    """

    def __init__(self, max_chars: int | None = None) -> None:
        self.max_chars = max_chars
        self._lines: list[str] = []
        self._columns: list[list[str]] = []
        self._first = 0
        self._size = 0
        self._spoiled: Spoiled | None = None

    def add(self, number: int, line: str | None, reason: str = "") -> Sequence[Piece]:
        """The pieces line ``number`` completes (most lines complete none); ``line`` None: it could not be read,
        because ``reason``."""
        if line is None:
            return self._spoil(number, reason)
        columns = line.split()
        if not columns:
            return self.close()
        if columns[0] == DOCSTART:
            return (*self.close(), DocumentStart(number, line))
        if self._spoiled is not None:
            return NOTHING  # the rest of a spoiled sentence is skipped, not kept
        if not self._lines:
            self._first = number
        if self.max_chars is not None:
            self._size += len(line)
            if self._size > self.max_chars:
                return self._spoil(number, f"sentence is longer than {self.max_chars} characters")
        self._lines.append(line)
        self._columns.append(columns)
        return NOTHING

    def _spoil(self, number: int, reason: str) -> Sequence[Piece]:
        """Line ``number`` spoils the sentence (the first such line is the one reported); its lines are dropped."""
        if self._spoiled is None:
            if not self._lines:
                self._first = number
            self._spoiled = Spoiled(number, f"{reason}; sentence from line {self._first} skipped")
            self._lines, self._columns = [], []
        return NOTHING

    def close(self) -> Sequence[Piece]:
        """The sentence being read, if any (at a blank line, a ``-DOCSTART-`` line, the end of the file)."""
        piece: Piece | None = self._spoiled
        if piece is None and self._lines:
            piece = Block(self._first, self._lines, self._columns)
        self._lines, self._columns, self._size, self._spoiled = [], [], 0, None
        return NOTHING if piece is None else (piece,)


def not_columns(path: str | Path) -> tuple[str, str] | None:
    """What a file plainly is instead of a column file, from its first lines: ``(kind, evidence)`` as
    :func:`~toolkit.data.readers.guess_format` gives them (``jsonl``, ``text``, ``csv``), or None when they
    could be one. Plain text shows as lines of many different widths, most of them not ending in a tag (a
    column file has one width, or two around a broken line, and tags last)."""
    lines = [(number, text) for number, text in first_lines(path) if text.split()[0] != DOCSTART]
    guess = guess_format(lines)
    if guess is not None and guess[0] in ("jsonl", "csv"):  # (tab-separated columns are a column file's own)
        return guess
    widths: dict[int, int] = {}
    for number, text in lines:
        widths.setdefault(len(text.split()), number)
    tagged = sum(bool(TAG.fullmatch(text.split()[-1])) for _, text in lines)
    if len(widths) >= max(2, len(lines) // 3) and 2 * tagged < len(lines):
        (first, at_first), (second, at_second) = list(widths.items())[:2]
        return "text", (f"one text per line: line {at_first} has {_words(first)}, line {at_second} has "
                        f"{_words(second)}, where a column file has the same columns on every line")
    return None


def _words(count: int) -> str:
    return f"{count} word{'s' if count != 1 else ''}"


def _wrong_format(path: str | Path, number: int, problem: str, hint: str) -> DataError:
    """``problem`` at ``number``, unless the file is plainly not a column file: then what it seems to be."""
    instead = not_columns(path)
    if instead is not None:
        return DataError(path, f"looks like {LOOKS_LIKE[instead[0]]} ({instead[1]}), not a CoNLL column file",
                         hint=CONLL_HINT)
    return DataError(path, problem, number, hint=hint)


def _sentence(block: Block, path: str | Path, fmt: ColumnFormat, with_tags: bool, width: int,
              document: int) -> Sentence:
    for number, columns in enumerate(block.columns, start=block.first_line):  # the columns first, as they are read
        if len(columns) != width:
            raise _wrong_format(path, number, f"has {len(columns)} columns, but earlier lines have {width}",
                                "every token line needs the same columns, separated by whitespace")
    tokens, tags = [], []
    for number, columns in enumerate(block.columns, start=block.first_line):
        try:
            tokens.append(columns[fmt.token_column])
            if with_tags:
                tag = columns[fmt.tag_column]
                split_tag(tag)
                tags.append(tag)
        except IndexError:
            raise _wrong_format(path, number, f"has {len(columns)} column(s); token column {fmt.token_column} / tag "
                                f"column {fmt.tag_column} do not exist", "set token_column/tag_column") from None
        except ValueError as error:
            raise _wrong_format(path, number, str(error), "tags must be O, B-X, I-X, E-X or S-X") from None
    return Sentence(tokens, tags if with_tags else None, block.lines, block.first_line, document)


def iter_conll(path: str | Path, fmt: ColumnFormat | None = None, with_tags: bool = True) -> Iterator[Sentence | str]:
    """Stream a column file: yields :class:`Sentence` objects and the ``-DOCSTART-`` lines themselves.

    Sentences are grouped by :class:`SentenceGrouper`; every token line must have as many columns as the
    file's first one.

    Raises:
        DataError: naming the file and line for inconsistent column counts, missing columns, bad tags; or
            what the file seems to be instead (JSONL, plain text) when it is plainly not a column file.
    """
    fmt = fmt or ColumnFormat()
    grouper = SentenceGrouper()
    width = None
    document = 0
    first = True
    for number, line in itertools.chain(decoded_lines(path), [(0, "")]):  # a blank line after the last one
        if first and line.strip() and not line.lstrip().startswith(DOCSTART):  # the first token line: JSONL?
            first = False
            if json_object(line):
                raise DataError(path, f"looks like JSONL (line {number} is a JSON object: "
                                f"{excerpt(line.strip(), 30)}), not a CoNLL column file", hint=CONLL_HINT)
        for piece in grouper.add(number, line):
            if isinstance(piece, Block):
                width = len(piece.columns[0]) if width is None else width
                yield _sentence(piece, path, fmt, with_tags, width, document)
            elif isinstance(piece, DocumentStart):
                document += 1
                yield piece.raw


def read_conll(path: str | Path, fmt: ColumnFormat | None = None, with_tags: bool = True) -> list[Sentence]:
    """All sentences of a column file (see :func:`iter_conll`); an error if it has none."""
    sentences = [item for item in iter_conll(path, fmt, with_tags) if isinstance(item, Sentence)]
    if not sentences:
        raise DataError(path, "contains no sentences",
                        hint="expected one token per line, blank lines between sentences")
    return sentences
