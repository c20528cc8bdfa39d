"""Ensembles: one network that averages several trained networks of one task (plain torch; `bilstm ensemble`).

Each ensemble takes and returns what one member does, so a predictor, an ONNX export and a decoder read it as
they read a member:

* :class:`ClassifyEnsemble`: the mean of the members' class probabilities. It returns ``log(mean softmax)``
  where a member returns logits, so every consumer's softmax (or argmax) reads the mean probabilities.
* :class:`TagEnsemble`: with a CRF, the mean of the members' emission scores *and* of their transition, start
  and end scores, decoded by one Viterbi. A CRF's score of a tag sequence is linear in those scores, so the
  ensemble's ``p(y) ∝ Π_k p_k(y)^{1/K}``: a product of experts in log space, which is still one linear-chain
  CRF; ONNX export of the tag scores and the CRF decoder read it unchanged, and its marginals are exact for it.
  (Averaging the members' sequence distributions instead would be a mixture, which no single chain represents
  and Viterbi cannot decode.) Softmax taggers average the members' per-token probabilities.
* :class:`LMEnsemble`: the mean of the members' next-token distributions (``log(mean softmax)``); its recurrent
  state is the members' states side by side in one flat tuple, so scoring, perplexity and sampling carry it
  like one model's.

Members keep their own weights (``members.<i>.*`` in the state dict) and may differ in architecture (sizes,
cells, seeds); what they read must be the same (the model directory's vocabulary, tag set: checked by
``toolkit.ensemble`` and the spec). There are no weights of the ensemble's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from toolkit.nn.crf import CRF
from toolkit.nn.lm import LMOutput
from toolkit.nn.tagger import TagNet, TagNetConfig


def mean_distribution(log_probs: Sequence[Tensor]) -> Tensor:
    """``log(mean_k exp(log_probs[k]))``, elementwise and stable: log-probabilities of the mean distribution."""
    return torch.logsumexp(torch.stack(list(log_probs)), dim=0) - math.log(len(log_probs))


class _Ensemble(nn.Module):
    """The members, as ``members.<i>``; at least one."""

    onnx_refusal: ClassVar[str | None] = None
    """Why `bilstm export --onnx` cannot export this ensemble (None: it exports like one member)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)


class ClassifyEnsemble(_Ensemble):
    """Token ids → log of the members' mean class probabilities ``[batch, num_classes]`` (see the module docstring)."""

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """``ids [batch, time]``, ``lengths [batch]`` → ``log(mean_k softmax(logits_k))`` ``[batch, num_classes]``."""
        return mean_distribution([member(ids, lengths).float().log_softmax(-1) for member in self.members])


class TagEnsemble(_Ensemble):
    """Tag scores and decoding of several taggers as one (product of experts with a CRF: the module docstring).

    It answers the calls a tagger's predictor and ONNX export make of a ``TagNet``: ``net(batch)`` (tag scores
    ``[B, T, K]``), ``net.decode(scores, batch)``, ``net.crf``, ``net.mask(batch)``, and the feature modules
    ``embed``, ``casing``, ``chars`` (the export gives the graph the inputs some member reads).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__(members)
        decoders = {member.config.decoder for member in self.members}
        if len(decoders) > 1:
            raise ValueError(f"an ensemble's taggers must all decode the same way, got {sorted(decoders)}")
        self.decoder = decoders.pop()
        self._shared: bool | None = None

    @property
    def embed(self) -> nn.Module:
        return self.members[0].embed  # the word vocabulary is shared: any member's table has its size

    @property
    def casing(self) -> nn.Module | None:
        return next((member.casing for member in self.members if member.casing is not None), None)

    @property
    def chars(self) -> nn.Module | None:
        return next((member.chars for member in self.members if member.chars is not None), None)

    @property
    def crf(self) -> CRF:
        """One CRF whose transition, start and end scores are the members' means (their constraints are the same:
        one tag set and scheme). Built on each call from the members' current weights, so nothing can go stale."""
        crfs = [member.crf for member in self.members]
        first = crfs[0]
        mean = CRF(first.num_tags, (first.allowed_transitions, first.allowed_start, first.allowed_end))
        mean = mean.to(first.transitions.device).requires_grad_(False)
        with torch.no_grad():
            for name in ("transitions", "start", "end"):
                getattr(mean, name).copy_(torch.stack([getattr(crf, name) for crf in crfs]).mean(0))
        return mean

    def _frozen_features_shared(self) -> bool:
        """Whether every member reads the same frozen transformer (same pooling, same weights): members trained
        from one transformer with other seeds do, and its features are then computed once, not once per member.
        Decided on the first call, from the loaded weights."""
        if self._shared is None:
            transformers = [member.transformer for member in self.members]
            first = transformers[0]
            self._shared = first is not None and not first.config.fine_tune and all(
                other is not None and other.config == first.config and _same_weights(first, other)
                for other in transformers[1:])
        return self._shared

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Tag scores ``[B, T, num_tags]``: CRF members' mean emission scores; softmax members' log mean
        probabilities (whose log-softmax is themselves)."""
        if len(self.members) > 1 and "transformer_features" not in batch and self._frozen_features_shared():
            # A member reads given features as it reads its own (the training-time cache takes the same path).
            batch = {**batch, "transformer_features": self.members[0].transformer(
                batch["subwords"], batch["subword_mask"], batch["subword_words"], batch["words"].size(1))}
        scores = [member(batch).float() for member in self.members]
        if self.decoder == "crf":
            return torch.stack(scores).mean(0)
        return mean_distribution([score.log_softmax(-1) for score in scores])

    @property
    def config(self) -> TagNetConfig:
        """The first member's network config: what ``TagNet.decode`` reads of it is the decoder, which all share."""
        return self.members[0].config

    def mask(self, batch: dict[str, Tensor]) -> Tensor:
        """``[B, T]`` True at real tokens (``TagNet.mask``)."""
        return self.members[0].mask(batch)

    def decode(self, scores: Tensor, batch: dict[str, Tensor], with_marginals: bool = False
               ) -> tuple[list[list[int]], Tensor | None]:
        """Best valid tag ids per sentence and, optionally, marginals ``[B, T, num_tags]``: ``TagNet.decode`` itself
        (one decoding code), run on this ensemble, so with the mean CRF (:attr:`crf`). A softmax ensemble's scores
        are log-probabilities already, which its log-softmax leaves as they are."""
        return TagNet.decode(self, scores, batch, with_marginals)


def _same_weights(first: nn.Module, other: nn.Module) -> bool:
    """Whether two modules hold equal tensors under the same names."""
    mine, theirs = first.state_dict(), other.state_dict()
    try:
        return mine.keys() == theirs.keys() and all(torch.equal(mine[key], theirs[key]) for key in mine)
    except (RuntimeError, TypeError):  # e.g. quantized layers' packed parameters: not compared, not shared
        return False


def _state_size(member: nn.Module) -> int:
    """How many tensors a language model's recurrent state is: ``(h,)``, or ``(h, c)`` for the LSTM kinds."""
    rnn = member.encoder.layers[0].forward_rnn
    return 2 if isinstance(rnn, nn.LSTM) or getattr(rnn, "has_cell_state", False) else 1


class LMEnsemble(_Ensemble):
    """Next-token distributions of several language models averaged, behind ``LMNet``'s interface.

    ``forward`` returns an :class:`LMOutput` whose ``hidden`` is the members' features side by side
    ``[..., sum of their output sizes]`` (:meth:`logits` splits them again) and whose ``state`` is the members'
    states in one flat tuple (each ``[layers, batch, hidden]``: a predictor selects rows of it as of one model's).
    """

    onnx_refusal = ("ONNX export of language-model ensembles is not built (the graph's recurrent state would be "
                    "every member's)")

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__(members)
        self.output_sizes = [member.output_size for member in self.members]
        self.state_sizes = [_state_size(member) for member in self.members]  # fixed here: quantizing swaps the RNNs

    @property
    def vocab_size(self) -> int:
        return self.members[0].vocab_size

    def _split(self, state: tuple[Tensor, ...] | None) -> list[tuple[Tensor, ...] | None]:
        if state is None:
            return [None] * len(self.members)
        if len(state) != sum(self.state_sizes):
            raise ValueError(f"an ensemble state has {sum(self.state_sizes)} tensors, got {len(state)}")
        parts, start = [], 0
        for size in self.state_sizes:
            parts.append(tuple(state[start : start + size]))
            start += size
        return parts

    def forward(self, ids: Tensor, state: tuple[Tensor, ...] | None = None,
                lengths: Tensor | None = None) -> LMOutput:
        """Read ``ids [batch, time]`` from ``state`` (None: zeros); see ``LMNet.forward``."""
        outputs = [member(ids, part, lengths) for member, part in zip(self.members, self._split(state), strict=True)]
        return LMOutput(torch.cat([output.hidden for output in outputs], dim=-1),
                        tuple(tensor for output in outputs for tensor in output.state))

    def logits(self, hidden: Tensor) -> Tensor:
        """``[..., sum of output sizes]`` → ``log(mean_k softmax(logits_k))`` ``[..., vocab_size]`` (float32):
        scores whose softmax is the mean distribution."""
        pieces = hidden.split(self.output_sizes, dim=-1)
        return mean_distribution([member.logits(piece).float().log_softmax(-1)
                                  for member, piece in zip(self.members, pieces, strict=True)])

    def step(self, ids: Tensor, state: tuple[Tensor, ...] | None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step of generation: ``ids [batch]`` → (log-probabilities of the mean ``[batch, vocab]``, new state)."""
        steps = [member.step(ids, part) for member, part in zip(self.members, self._split(state), strict=True)]
        return (mean_distribution([log_probs for log_probs, _ in steps]),
                tuple(tensor for _, new in steps for tensor in new))
