"""Token ↔ id vocabulary, built from training data only and saved beside the weights."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD = "<pad>"
UNK = "<unk>"
EOS = "<eos>"
DEFAULT_SPECIALS = (PAD, UNK)
LM_SPECIALS = (EOS, UNK)
"""A language model's vocabulary: no padding entry in the softmax (PTB's 10k words are exactly its 10k outputs)."""


class Vocab:
    """The ``specials`` first (default ``<pad>`` 0, ``<unk>`` 1), then tokens by descending frequency, ties
    alphabetical. ``<unk>`` is always index 1."""

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = DEFAULT_SPECIALS) -> None:
        specials = tuple(specials)
        if specials not in (DEFAULT_SPECIALS, LM_SPECIALS):
            raise ValueError(f"special tokens must be {DEFAULT_SPECIALS} or {LM_SPECIALS}, got {specials}")
        if tuple(tokens[: len(specials)]) != specials:
            raise ValueError(f"a vocabulary starts with {list(specials)}; got {list(tokens[:2])}")
        self.tokens = list(tokens)
        self.specials = specials
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    pad_index = 0
    """``<pad>`` (``<eos>`` in a language model's vocabulary, which has no padding entry)."""
    unk_index = 1

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], max_size: int | None = None, min_freq: int = 1,
              specials: Sequence[str] = DEFAULT_SPECIALS) -> Vocab:
        """Count tokens and keep the ``max_size`` most frequent (specials included) with ``min_freq`` occurrences."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        for special in specials:
            counts.pop(special, None)
        ranked = sorted((item for item in counts.items() if item[1] >= min_freq), key=lambda kv: (-kv[1], kv[0]))
        if max_size is not None:
            ranked = ranked[: max(max_size - len(specials), 0)]
        return cls([*specials] + [token for token, _ in ranked], specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Tokens → ids; unknown tokens map to :attr:`unk_index`."""
        get = self.index.get
        return [get(token, 1) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids → tokens."""
        return [self.tokens[i] for i in ids]

    def to_json(self) -> dict:
        data: dict = {"tokens": self.tokens}
        if self.specials != DEFAULT_SPECIALS:
            data["specials"] = list(self.specials)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Vocab:
        return cls(data["tokens"], data.get("specials", DEFAULT_SPECIALS))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
