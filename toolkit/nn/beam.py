"""Greedy and batched beam search over a step function with explicit state.

Both searches work on a whole batch of sentences at once and drop sentences from the batch as they
finish, so a long sentence does not keep paying for short ones. Each sentence has its own length
limit, and no sentence's result depends on which others share its batch.

Beam search (batched over ``sentences × beams``) follows fairseq's bookkeeping: each step takes the
``2·beam`` best continuations of every sentence; those among the first ``beam`` that end in ``</s>``
become finished hypotheses, scored ``log p / length^α`` (``length`` counts ``</s>``); the best ``beam``
others stay alive. A sentence is done once it has ``beam`` finished hypotheses, or at its length limit
(when its live hypotheses are finished as they are). With ``beam_size=1`` this is exactly greedy search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass
class DecodingConfig:
    """Search settings (stored with the model as its defaults; the Predictor can override them)."""

    beam_size: int = 5
    """Hypotheses kept per sentence; 1 = greedy."""
    length_penalty: float = 1.0
    """α in ``score = log p / length^α`` (0 = raw log-probability, 1 = per-token average)."""
    max_length_ratio: float = 2.0
    """A translation may have at most ``ratio × source length + offset`` subwords (``</s>`` included)."""
    max_length_offset: int = 10
    """See ``max_length_ratio``."""
    max_length: int = 256
    """Hard cap on the output length in subwords."""

    def validate(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.max_length < 1 or self.max_length_ratio < 0:
            raise ValueError("max_length must be >= 1 and max_length_ratio >= 0")

    def max_lengths(self, source_lengths: Tensor) -> Tensor:
        """Per-sentence output limits ``[batch]`` from the source lengths ``[batch]``."""
        limits = (source_lengths.float() * self.max_length_ratio).ceil().long() + self.max_length_offset
        return limits.clamp(1, self.max_length)


@dataclass
class Hypothesis:
    """One output sentence."""

    tokens: list[int]
    """Output ids without ``<s>``/``</s>``."""
    log_prob: float
    """Sum of the token log-probabilities (``</s>`` included when produced)."""
    score: float
    """Length-normalised ``log_prob`` that ranked it (greedy: ``log_prob``)."""
    attention: Tensor | None = None
    """``[output steps, src_len]`` attention weights (one row per output token, ``</s>`` included)."""
    truncated: bool = False
    """True when the output hit its length limit before ``</s>``: the translation is cut short."""


class StepState(Protocol):
    def index(self, rows: Tensor) -> StepState: ...


class Stepper(Protocol):
    def step(self, tokens: Tensor, state, memory) -> tuple[Tensor, object, Tensor]: ...


def _log_probs(logits: Tensor, banned: Sequence[int]) -> Tensor:
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    if banned:
        log_probs[:, list(banned)] = float("-inf")
    return log_probs


@torch.no_grad()
def greedy_search(decoder: Stepper, memory: StepState, state: StepState, max_lengths: Tensor, bos: int, eos: int,
                  banned: Sequence[int] = (), return_attention: bool = False) -> list[Hypothesis]:
    """Pick the most probable token at every step.

    Args:
        decoder: has ``step(tokens [n], state, memory) -> (logits [n, vocab], state, weights [n, src_len])``.
        memory, state: per-sentence tuples of tensors with an ``index(rows)`` method, batch size ``B``.
        max_lengths: ``[B]`` output limits (``</s>`` included).
        bos, eos: start and end ids.
        banned: ids never produced (e.g. padding and ``<s>``).
        return_attention: keep each output's attention weights.

    Returns:
        One :class:`Hypothesis` per sentence, in input order.
    """
    batch = max_lengths.size(0)
    device = max_lengths.device
    limit = int(max_lengths.max())
    outputs = torch.full((batch, limit), eos, dtype=torch.long)
    log_prob = torch.zeros(batch, dtype=torch.float64)
    lengths = torch.zeros(batch, dtype=torch.long)
    attention: list[list[Tensor]] = [[] for _ in range(batch)]
    active = torch.arange(batch, device=device)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    for t in range(limit):
        logits, state, weights = decoder.step(tokens, state, memory)
        best_lp, tokens = _log_probs(logits, banned).max(dim=-1)
        ids = active.cpu()
        outputs[ids, t] = tokens.cpu()
        log_prob[ids] += best_lp.double().cpu()
        if return_attention:
            for row, sentence in enumerate(ids.tolist()):
                attention[sentence].append(weights[row].float().cpu())
        done = (tokens == eos) | (max_lengths[active] <= t + 1)
        if bool(done.any()):
            lengths[ids[done.cpu()]] = t + 1
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            active, tokens = active[keep], tokens[keep]
            state, memory = state.index(keep), memory.index(keep)
    results = []
    for sentence in range(batch):
        produced = outputs[sentence, : lengths[sentence]].tolist()
        ended = bool(produced) and produced[-1] == eos
        if ended:
            produced = produced[:-1]
        weights = torch.stack(attention[sentence]) if return_attention else None
        results.append(Hypothesis(produced, float(log_prob[sentence]), float(log_prob[sentence]), weights,
                                  truncated=not ended))
    return results


@torch.no_grad()
def beam_search(decoder: Stepper, memory: StepState, state: StepState, max_lengths: Tensor, bos: int, eos: int,
                beam_size: int = 5, length_penalty: float = 1.0, banned: Sequence[int] = (),
                return_attention: bool = False) -> list[Hypothesis]:
    """Batched beam search with length normalisation.

    Args: as :func:`greedy_search`, plus ``beam_size`` and ``length_penalty`` (α in ``log p / length^α``).

    Returns:
        The best finished :class:`Hypothesis` per sentence, in input order.
    """
    beam = beam_size
    batch = max_lengths.size(0)
    device = max_lengths.device
    rows = torch.arange(batch, device=device).repeat_interleave(beam)
    memory, state = memory.index(rows), state.index(rows)
    active = torch.arange(batch, device=device)  # sentence of each live group of `beam` rows
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    history = torch.zeros(batch * beam, 0, dtype=torch.long, device=device)  # tokens so far, per row
    attn_history: Tensor | None = None  # [rows, steps, src_len]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    tokens = torch.full((batch * beam,), bos, dtype=torch.long, device=device)

    def finish(sentence: int, row: int, extra: int | None, total: float, step: int, weights: Tensor) -> None:
        produced = history[row].tolist() + ([] if extra is None else [extra])
        length = step + 1
        attention = None
        if return_attention:
            steps = [attn_history[row]] if attn_history is not None else []
            attention = torch.cat([*steps, weights[row].unsqueeze(0)]).float().cpu()
        finished[sentence].append(Hypothesis(produced, total, total / length**length_penalty, attention))

    for t in range(int(max_lengths.max())):
        groups = active.numel()
        logits, state, weights = decoder.step(tokens, state, memory)
        log_probs = _log_probs(logits, banned)
        vocab = log_probs.size(-1)
        candidates = (scores.view(-1, 1) + log_probs).view(groups, beam * vocab)
        top_scores, top_index = candidates.topk(min(2 * beam, beam * vocab), dim=1)  # [G, 2K]
        origin, token = top_index // vocab, top_index % vocab
        is_eos = token == eos
        # 1. Hypotheses ending in </s> among the `beam` best candidates are finished.
        ends = is_eos[:, :beam] & torch.isfinite(top_scores[:, :beam])
        sentences = active.tolist()
        for group, position in ends.nonzero().tolist():
            sentence = sentences[group]
            if len(finished[sentence]) < beam:
                row = group * beam + int(origin[group, position])
                finish(sentence, row, None, float(top_scores[group, position]), t, weights)
        # 2. The best `beam` candidates not ending in </s> stay alive (there are always enough: each
        #    beam contributes at most one </s> candidate to the 2·beam).
        alive = ~is_eos
        chosen = (alive & (alive.cumsum(1) <= beam)).nonzero()[:, 1].view(groups, beam)
        scores = top_scores.gather(1, chosen)
        source_rows = (torch.arange(groups, device=device) * beam).unsqueeze(1) + origin.gather(1, chosen)
        source_rows = source_rows.view(-1)
        tokens = token.gather(1, chosen).view(-1)
        state = state.index(source_rows)
        history = torch.cat([history.index_select(0, source_rows), tokens.unsqueeze(1)], dim=1)
        if return_attention:
            step_weights = weights.index_select(0, source_rows).unsqueeze(1)
            attn_history = step_weights if attn_history is None else torch.cat(
                [attn_history.index_select(0, source_rows), step_weights], dim=1)
        # 3. At its length limit a sentence finishes its live hypotheses as they are.
        at_limit = (max_lengths[active] <= t + 1).tolist()
        done = []
        for group, sentence in enumerate(sentences):
            if at_limit[group]:
                for k in range(beam):
                    total = float(scores[group, k])
                    if len(finished[sentence]) < beam and total > float("-inf"):
                        row = group * beam + k
                        finished[sentence].append(Hypothesis(
                            history[row].tolist(), total, total / (t + 1) ** length_penalty,
                            attn_history[row].float().cpu() if attn_history is not None else None,
                            truncated=True))
            done.append(at_limit[group] or len(finished[sentence]) >= beam)
        # 4. Drop finished sentences from the batch.
        if any(done):
            keep_groups = torch.tensor([g for g, d in enumerate(done) if not d], dtype=torch.long, device=device)
            if keep_groups.numel() == 0:
                break
            keep_rows = (keep_groups.unsqueeze(1) * beam + torch.arange(beam, device=device)).view(-1)
            active, scores = active[keep_groups], scores[keep_groups]
            tokens, history = tokens[keep_rows], history[keep_rows]
            state, memory = state.index(keep_rows), memory.index(keep_rows)
            if attn_history is not None:
                attn_history = attn_history[keep_rows]
    return [max(hypotheses, key=lambda h: h.score) for hypotheses in finished]
