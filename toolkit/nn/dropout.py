"""Variational ("locked") dropout: one mask per sequence, shared across time steps (Gal & Ghahramani 2016)."""

from __future__ import annotations

from torch import Tensor, nn


class LockedDropout(nn.Module):
    """Drop the same features at every time step of a sequence.

    Args:
        p: drop probability.
        time_dim: the time axis of the inputs (1 for ``[batch, time, features]``, 0 for time-major).
    """

    def __init__(self, p: float, time_dim: int = 1) -> None:
        super().__init__()
        self.p = p
        self.time_dim = time_dim

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (3-D, time on ``time_dim``) → same shape."""
        if not self.training or self.p == 0:
            return x
        shape = list(x.shape)
        shape[self.time_dim] = 1
        return x * (x.new_empty(shape).bernoulli_(1 - self.p) / (1 - self.p))
