"""Linear-chain CRF: vectorised forward algorithm, batched Viterbi, marginals, transition constraints.

Scores of a tag sequence ``y`` for emissions ``E`` (``[time, tags]``)::

    score(y) = start[y_0] + Σ_t E[t, y_t] + Σ_t trans[y_{t-1}, y_t] + end[y_{T-1}]

``trans[i, j]`` is the score of moving from tag ``i`` to tag ``j``. Forbidden transitions (e.g. ``O → I-PER``
in IOB2/BIOES) are masked to ``-inf``-like scores in every computation, so neither training nor decoding
can produce them. All functions take a ``mask`` ``[batch, time]`` of real (non-padding) positions; every
sequence must have at least one real position, and real positions come first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

NEG = -1e4  # finite "minus infinity": keeps logsumexp and its gradient free of NaNs


class CRF(nn.Module):
    """Transition, start and end scores with optional hard constraints.

    Args:
        num_tags: size of the tag set.
        allowed: optional bool tensors ``(transitions [K, K], start [K], end [K])``; False entries are
            forbidden (see :func:`toolkit.data.tagschemes.allowed_transitions`).
    """

    def __init__(self, num_tags: int, allowed: tuple[Tensor, Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        if allowed is None:
            allowed = (torch.ones(num_tags, num_tags, dtype=torch.bool), torch.ones(num_tags, dtype=torch.bool),
                       torch.ones(num_tags, dtype=torch.bool))
        # Buffers, so the constraints travel with the weights into the model directory.
        self.register_buffer("allowed_transitions", allowed[0].clone())
        self.register_buffer("allowed_start", allowed[1].clone())
        self.register_buffer("allowed_end", allowed[2].clone())

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """Constrained ``(transitions [K, K], start [K], end [K])``."""
        return (self.transitions.masked_fill(~self.allowed_transitions, NEG),
                self.start.masked_fill(~self.allowed_start, NEG), self.end.masked_fill(~self.allowed_end, NEG))

    def _forward_alphas(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Log partition function ``[B]`` and the alpha tables (one ``[B, K]`` per time step)."""
        transitions, start, end = self.scores()
        alpha = start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, emissions.size(1)):
            # [B, K_prev, 1] + [K_prev, K] → logsumexp over K_prev → [B, K]
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
            alphas.append(alpha)
        return torch.logsumexp(alpha + end, dim=1), alphas

    def sequence_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Unnormalised score ``[B]`` of the given tag sequences (``tags`` ``[B, T]``)."""
        transitions, start, end = self.scores()
        maskf = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, T]
        score = start[tags[:, 0]] + (emitted * maskf).sum(1)
        score = score + (transitions[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return score + end[last]

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """``log p(tags | emissions)`` per sequence, ``[B]``.

        Args:
            emissions: ``[B, T, K]`` tag scores from the encoder.
            tags: ``[B, T]`` gold tag ids (any value at padded positions).
            mask: ``[B, T]`` bool, True at real positions.
        """
        log_z, _ = self._forward_alphas(emissions, mask)
        return self.sequence_score(emissions, tags, mask) - log_z

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Posterior ``p(y_t = k | emissions)`` ``[B, T, K]`` by forward–backward (zero where padded)."""
        transitions, _, end = self.scores()
        log_z, alphas = self._forward_alphas(emissions, mask)
        batch, time, tags = emissions.shape
        lengths = mask.sum(1)
        beta = end.expand(batch, tags)
        betas = [beta] * time
        for t in range(time - 2, -1, -1):
            # β_t(i) = logsumexp_j trans[i, j] + E[t+1, j] + β_{t+1}(j); positions past the end keep `end`.
            step = torch.logsumexp(transitions + (emissions[:, t + 1] + betas[t + 1]).unsqueeze(1), dim=2)
            betas[t] = torch.where((t + 1 < lengths).unsqueeze(1), step, end.expand(batch, tags))
        posterior = torch.stack([alphas[t] + betas[t] for t in range(time)], dim=1) - log_z.view(batch, 1, 1)
        return posterior.exp() * mask.unsqueeze(2).to(emissions.dtype)

    def viterbi(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """Best tag sequence per batch element (lists of each sequence's real length), batched.

        Decoding needs no gradient, and at inference sizes (a few dozen steps over ``[B, K, K]``) the cost
        is per-operation overhead, so the recursion runs in NumPy on the CPU (≈5× less overhead per step
        than torch ops at batch 1).
        """
        transitions, start, end = (t.detach().float().cpu().numpy() for t in self.scores())
        scores = emissions.detach().float().cpu().numpy()
        lengths = mask.sum(1).cpu().numpy()
        batch, time, tags = scores.shape
        score = start + scores[:, 0]
        history = np.empty((max(time - 1, 0), batch, tags), dtype=np.int64)
        identity = np.broadcast_to(np.arange(tags), (batch, tags))
        shortest = int(lengths.min()) if batch else 0
        for t in range(1, time):
            candidates = score[:, :, None] + transitions  # [B, K_prev, K]
            previous = candidates.argmax(1)
            best = candidates.max(1)  # cheaper than take_along_axis at these sizes (per-call overhead)
            if t < shortest:  # every sequence is still running: no masking needed
                score = best + scores[:, t]
                history[t - 1] = previous
                continue
            live = (t < lengths)[:, None]
            score = np.where(live, best + scores[:, t], score)
            # Past a sequence's end every tag points at itself, so back-tracking passes straight through.
            history[t - 1] = np.where(live, previous, identity)
        path = np.empty((batch, time), dtype=np.int64)
        path[:, -1] = (score + end).argmax(1)
        rows = np.arange(batch)
        for t in range(time - 2, -1, -1):
            path[:, t] = history[t][rows, path[:, t + 1]]
        return [row[:length].tolist() for row, length in zip(path, lengths.tolist(), strict=True)]
