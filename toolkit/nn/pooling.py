"""Sequence pooling: one vector per sequence from an encoder's outputs, ignoring padding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.nn.encoder import EncoderOutput, merge_directions

POOLINGS = ("last", "mean", "max", "attention")


def parse_pooling(spec: str) -> list[str]:
    """``"max"`` or a ``+``-joined combination such as ``"max+mean"`` (outputs are concatenated)."""
    modes = [mode.strip() for mode in spec.split("+")]
    unknown = [mode for mode in modes if mode not in POOLINGS]
    if unknown or not modes:
        raise ValueError(f"pooling must be one of {POOLINGS} or a '+'-joined combination, got {spec!r}")
    return modes


class AttentionPooling(nn.Module):
    """Additive self-attention pooling (Yang et al. 2016): ``softmax(v·tanh(W h_t))``-weighted sum."""

    def __init__(self, size: int, attention_size: int = 128) -> None:
        super().__init__()
        self.project = nn.Linear(size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, outputs: Tensor, mask: Tensor) -> Tensor:
        """``outputs [B, T, H]``, ``mask [B, T]`` (True = real token) → ``[B, H]``."""
        scores = self.score(torch.tanh(self.project(outputs))).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)


class SequencePooling(nn.Module):
    """Pools ``last | mean | max | attention`` (or a ``+`` combination) over the valid positions.

    Args:
        spec: pooling mode(s), e.g. ``"max"`` or ``"max+mean"``.
        size: the encoder's output size.
        merge: the encoder's direction merge (``last`` merges the two final states the same way).
    """

    def __init__(self, spec: str, size: int, merge: str = "concat") -> None:
        super().__init__()
        self.modes = parse_pooling(spec)
        self.merge = merge
        self.attention = AttentionPooling(size) if "attention" in self.modes else None
        self.output_size = size * len(self.modes)

    def forward(self, encoded: EncoderOutput, lengths: Tensor) -> Tensor:
        """``encoded.outputs [B, T, H]``, ``lengths [B]`` → ``[B, H × number of modes]``."""
        outputs = encoded.outputs
        positions = torch.arange(outputs.size(1), device=outputs.device).unsqueeze(0)
        mask = positions < lengths.to(outputs.device).unsqueeze(1)
        pooled = []
        for mode in self.modes:
            if mode == "last":
                top = encoded.last_hidden[-1]  # [directions, B, hidden]
                pooled.append(top[0] if top.size(0) == 1 else merge_directions(top[0], top[1], self.merge))
            elif mode == "mean":
                pooled.append(outputs.sum(1) / lengths.to(outputs.device, outputs.dtype).unsqueeze(1))
            elif mode == "max":
                pooled.append(outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1))
            else:
                pooled.append(self.attention(outputs, mask))
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)
