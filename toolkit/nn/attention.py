"""Attention over encoder states: dot and general (multiplicative, Luong et al. 2015) and additive
(Bahdanau et al. 2015) scoring, with padding masked out exactly."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTIONS = ("dot", "general", "additive")


class Attention(nn.Module):
    """Scores decoder queries against encoder states and returns the weighted context.

    * ``dot``: ``score(q, k) = qᵀk`` (needs ``query_size == memory_size``);
    * ``general``: ``score(q, k) = qᵀ W k``;
    * ``additive``: ``score(q, k) = vᵀ tanh(W_q q + W_k k)``.

    The key side (``W k``) depends only on the source, so :meth:`keys` computes it once per sentence and
    every decoding step reuses it.

    Args:
        kind: ``dot``, ``general`` or ``additive``.
        query_size: decoder state size.
        memory_size: encoder output size.
        attention_size: hidden size of the additive scorer (ignored otherwise).
    """

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int = 256) -> None:
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(f"dot attention needs decoder hidden_size == encoder output size "
                             f"({query_size} != {memory_size}); use 'general'")
        self.kind = kind
        self.key_proj: nn.Linear | None = None
        if kind == "general":
            self.key_proj = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "additive":
            self.key_proj = nn.Linear(memory_size, attention_size, bias=False)
            self.query_proj = nn.Linear(query_size, attention_size)
            self.score = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """Encoder outputs ``[batch, src_len, memory_size]`` → keys ``[batch, src_len, key_size]``."""
        return memory if self.key_proj is None else self.key_proj(memory)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Attend with one or more queries per sentence.

        Args:
            query: ``[batch, queries, query_size]``.
            keys: ``[batch, src_len, key_size]`` from :meth:`keys`.
            values: ``[batch, src_len, memory_size]`` (the encoder outputs).
            mask: ``[batch, src_len]`` bool, True at real (non-padding) source positions.

        Returns:
            ``(context [batch, queries, memory_size], weights [batch, queries, src_len])``; weights are
            exactly zero at padded positions and sum to one over the real ones.
        """
        if self.kind == "additive":
            # [B, Q, 1, A] + [B, 1, S, A] → [B, Q, S]
            scores = self.score(torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, values), weights
