"""CoNLL-style column files: CoNLL-2003 (``token POS chunk NER``, ``-DOCSTART-`` lines) and generic ones.

A sentence is a run of non-blank lines; a ``-DOCSTART-`` line starts a new document. The token and tag
columns are configurable (tag column ``-1`` = last). Every sentence keeps its original lines so a
labelling job can write them back token for token with a predicted column added.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.data.readers import decoded_lines
from toolkit.data.tagschemes import split_tag
from toolkit.errors import DataError

DOCSTART = "-DOCSTART-"


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
            raise DataError(path, f"has {len(columns)} column(s); token column {fmt.token_column} / tag column "
                            f"{fmt.tag_column} do not exist", number, hint="set token_column/tag_column") from None
        except ValueError as error:
            raise DataError(path, str(error), number, hint="tags must be O, B-X, I-X, E-X or S-X") from None
    return Sentence(tokens, tags if with_tags else None, [line for _, line, _ in rows], rows[0][0], document)


def iter_conll(path: str | Path, fmt: ColumnFormat | None = None, with_tags: bool = True) -> Iterator[Sentence | str]:
    """Stream a column file: yields :class:`Sentence` objects and the ``-DOCSTART-`` lines themselves.

    Raises:
        DataError: naming the file and line for inconsistent column counts, missing columns, bad tags.
    """
    fmt = fmt or ColumnFormat()
    rows: list[tuple[int, str, list[str]]] = []
    width = None
    document = 0
    for number, line in decoded_lines(path):
        columns = line.split()
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
            raise DataError(path, f"has {len(columns)} columns, but earlier lines have {width}", number,
                            hint="every token line needs the same columns, separated by whitespace")
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
