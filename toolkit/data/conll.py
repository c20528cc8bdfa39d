"""CoNLL-style column files: CoNLL-2003 (``token POS chunk NER``, ``-DOCSTART-`` lines) and generic ones.

A sentence is a run of non-blank lines; a ``-DOCSTART-`` line starts a new document. The token and tag
columns are configurable (tag column ``-1`` = last). Every sentence keeps its original lines so a
labelling job can write them back token for token with a predicted column added. A file that is plainly
something else (JSONL, one text per line) is named as such instead of as a column-count mismatch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.data.readers import DOCSTART, LOOKS_LIKE, TAG, decoded_lines, first_lines, guess_format, json_object
from toolkit.data.tagschemes import split_tag
from toolkit.data.textrules import excerpt
from toolkit.errors import DataError

__all__ = ["DOCSTART", "ColumnFormat", "Sentence", "iter_conll", "not_columns", "read_conll"]

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


def _sentence(rows: list[tuple[int, str, list[str]]], path: str | Path, fmt: ColumnFormat, with_tags: bool,
              document: int) -> Sentence:
    tokens, tags = [], []
    for number, _, columns in rows:
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
    return Sentence(tokens, tags if with_tags else None, [line for _, line, _ in rows], rows[0][0], document)


def iter_conll(path: str | Path, fmt: ColumnFormat | None = None, with_tags: bool = True) -> Iterator[Sentence | str]:
    """Stream a column file: yields :class:`Sentence` objects and the ``-DOCSTART-`` lines themselves.

    Raises:
        DataError: naming the file and line for inconsistent column counts, missing columns, bad tags; or
            what the file seems to be instead (JSONL, plain text) when it is plainly not a column file.
    """
    fmt = fmt or ColumnFormat()
    rows: list[tuple[int, str, list[str]]] = []
    width = None
    document = 0
    for number, line in decoded_lines(path):
        columns = line.split()
        if width is None and not rows and json_object(line):  # the first token line: JSONL, not columns
            raise DataError(path, f"looks like JSONL (line {number} is a JSON object: {excerpt(line.strip(), 30)}), "
                            "not a CoNLL column file", hint=CONLL_HINT)
        if not columns:
            if rows:
                yield _sentence(rows, path, fmt, with_tags, document)
                rows = []
            continue
        if columns[0] == DOCSTART:
            if rows:
                yield _sentence(rows, path, fmt, with_tags, document)
                rows = []
            document += 1
            yield line
            continue
        if width is None:
            width = len(columns)
        elif len(columns) != width:
            raise _wrong_format(path, number, f"has {len(columns)} columns, but earlier lines have {width}",
                                "every token line needs the same columns, separated by whitespace")
        rows.append((number, line, columns))
    if rows:
        yield _sentence(rows, path, fmt, with_tags, document)


def read_conll(path: str | Path, fmt: ColumnFormat | None = None, with_tags: bool = True) -> list[Sentence]:
    """All sentences of a column file (see :func:`iter_conll`); an error if it has none."""
    sentences = [item for item in iter_conll(path, fmt, with_tags) if isinstance(item, Sentence)]
    if not sentences:
        raise DataError(path, "contains no sentences",
                        hint="expected one token per line, blank lines between sentences")
    return sentences
