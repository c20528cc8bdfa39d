"""Token ↔ id vocabulary, built from training data only and saved beside the weights."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD = "<pad>"
UNK = "<unk>"


class Vocab:
    """Index 0 is padding, 1 is the unknown token; the rest by descending frequency, ties alphabetical."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {list(tokens[:2])}")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    pad_index = 0
    unk_index = 1

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], max_size: int | None = None, min_freq: int = 1) -> Vocab:
        """Count tokens and keep the ``max_size`` most frequent with at least ``min_freq`` occurrences."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        ranked = sorted((item for item in counts.items() if item[1] >= min_freq), key=lambda kv: (-kv[1], kv[0]))
        if max_size is not None:
            ranked = ranked[: max(max_size - 2, 0)]
        return cls([PAD, UNK] + [token for token, _ in ranked])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Tokens → ids; unknown tokens map to :attr:`unk_index`."""
        get = self.index.get
        return [get(token, 1) for token in tokens]

    def to_json(self) -> dict:
        return {"tokens": self.tokens}

    @classmethod
    def from_json(cls, data: dict) -> Vocab:
        return cls(data["tokens"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
