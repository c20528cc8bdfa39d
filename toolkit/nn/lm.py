"""Recurrent language model (plain torch): embeddings → unidirectional RecurrentEncoder → tied softmax.

The regularisation of AWD-LSTM (Merity et al. 2018), each part optional:

* variational (locked) dropout on the inputs (``input_dropout``), between layers (``encoder.dropout`` with
  ``encoder.locked_dropout``) and on the outputs (``output_dropout``): one mask per sequence, not per step;
* embedding dropout (``embedding_dropout``): whole word types dropped for a batch;
* DropConnect on the hidden-to-hidden weights (``encoder.weight_drop``).

The output layer shares the embedding matrix (``tie_embeddings``; Press & Wolf 2017, Inan et al. 2017), through a
projection when the last layer's size differs from the embedding size. The softmax covers exactly the
vocabulary: there is no padding entry, so a perplexity compares with the literature's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from toolkit.nn.dropout import LockedDropout
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder

SOFTMAXES = ("full", "adaptive")


def _default_encoder() -> EncoderConfig:
    return EncoderConfig(cell="lstm", hidden_size=256, num_layers=2, bidirectional=False, dropout=0.25,
                         locked_dropout=True, init="torch")


@dataclass
class LMNetConfig:
    """Architecture of a :class:`LMNet` (the vocabulary size comes from the data)."""

    embedding_dim: int = 256
    """Word (or character) vector size; also the output layer's size when tied."""
    encoder: EncoderConfig = field(default_factory=_default_encoder)
    """The recurrent encoder; must be unidirectional (a backward model reads reversed text instead)."""
    tie_embeddings: bool = True
    """Share the embedding matrix with the output layer."""
    input_dropout: float = 0.3
    """Locked dropout on the embeddings fed to the encoder."""
    output_dropout: float = 0.3
    """Locked dropout on the last layer's outputs."""
    embedding_dropout: float = 0.0
    """Probability of dropping a whole word type's embedding for a batch (AWD-LSTM's ``dropoute``)."""
    softmax: str = "full"
    """``full``, or ``adaptive`` (Grave et al. 2017, torch's ``AdaptiveLogSoftmaxWithLoss``): frequent words in a
    small head, rare ones in clusters of lower dimension; exact probabilities, several times cheaper for
    vocabularies of tens of thousands of words. Needs ``tie_embeddings: false`` and a frequency-sorted vocabulary
    (which the data module builds)."""
    adaptive_cutoffs: list[int] = field(default_factory=lambda: [2000, 10000])
    """``adaptive``: vocabulary ranks where the head and each cluster end (cutoffs at or past the vocabulary's
    size are dropped)."""
    adaptive_div_value: float = 4.0
    """``adaptive``: each cluster's vectors are this many times smaller than the previous one's."""
    freeze_embeddings: bool = False
    """Keep the input embeddings fixed (e.g. a backward model sharing a forward model's embeddings)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field."""
        self.encoder.validate()
        if self.encoder.bidirectional:
            raise ValueError("a language model's encoder must be unidirectional (encoder.bidirectional: false); "
                             "use direction: backward for a right-to-left model")
        for name in ("input_dropout", "output_dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.embedding_dim < 1:
            raise ValueError("embedding_dim must be >= 1")
        if self.softmax not in SOFTMAXES:
            raise ValueError(f"softmax must be one of {SOFTMAXES}, got {self.softmax!r}")
        if self.softmax == "adaptive" and self.tie_embeddings:
            raise ValueError("softmax: adaptive has its own output weights; set tie_embeddings: false")
        cutoffs = list(self.adaptive_cutoffs)
        if sorted(set(cutoffs)) != cutoffs or min(cutoffs, default=1) < 1:
            raise ValueError(f"adaptive_cutoffs must be increasing positive ranks, got {self.adaptive_cutoffs}")


class LMOutput(NamedTuple):
    """What :meth:`LMNet.forward` returns."""

    hidden: Tensor
    """``[batch, time, output_size]``: the features the softmax reads (see :meth:`LMNet.logits`)."""
    state: tuple[Tensor, ...]
    """The encoder's recurrent state after the last step (carry it into the next chunk of a stream)."""


class LMNet(nn.Module):
    """Token ids → next-token scores, with an explicit recurrent state.

    Args:
        config: architecture.
        vocab_size: size of the vocabulary (= the softmax).
    """

    def __init__(self, config: LMNetConfig, vocab_size: int) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.embedding_dim)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.input_dropout = LockedDropout(config.input_dropout)
        self.encoder = RecurrentEncoder(config.embedding_dim, config.encoder)
        self.output_dropout = LockedDropout(config.output_dropout)
        size = self.encoder.output_size
        needs_projection = config.tie_embeddings and size != config.embedding_dim
        self.project = nn.Linear(size, config.embedding_dim) if needs_projection else None
        self.output_size = config.embedding_dim if config.tie_embeddings else size
        self.embed.weight.requires_grad_(not config.freeze_embeddings)
        self.adaptive = None
        if config.softmax == "adaptive":
            cutoffs = [cutoff for cutoff in config.adaptive_cutoffs if cutoff < vocab_size - 1]
            if not cutoffs:
                raise ValueError(f"softmax: adaptive needs a cutoff below the vocabulary size {vocab_size - 1}; "
                                 f"got {config.adaptive_cutoffs}")
            if size // config.adaptive_div_value ** len(cutoffs) < 1:
                raise ValueError(f"adaptive_div_value {config.adaptive_div_value} leaves the last of {len(cutoffs)} "
                                 f"clusters no dimensions at hidden size {size}; use a smaller value or fewer cutoffs")
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(size, vocab_size, cutoffs, config.adaptive_div_value)
            self.decoder = None
            return
        # Tied: the logits use the embedding matrix itself (a second, aliased tensor would be refused by safetensors).
        self.decoder = None if config.tie_embeddings else nn.Linear(size, vocab_size, bias=False)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size))

    @property
    def vocab_size(self) -> int:
        return self.embed.num_embeddings

    def _embed(self, ids: Tensor) -> Tensor:
        if not (self.training and self.config.embedding_dropout > 0):
            return self.embed(ids)
        keep = self.embed.weight.new_empty(self.vocab_size, 1).bernoulli_(1 - self.config.embedding_dropout)
        weight = self.embed.weight * keep / (1 - self.config.embedding_dropout)
        return nn.functional.embedding(ids, weight)

    def forward(self, ids: Tensor, state: tuple[Tensor, ...] | None = None,
                lengths: Tensor | None = None) -> LMOutput:
        """Read ``ids [batch, time]`` from ``state`` (None: zeros).

        ``lengths`` ``[batch]`` marks right padding (scoring texts of different lengths); positions past a
        text's end are computed but meaningless, and the returned state is then not usable.
        """
        if lengths is None:
            lengths = torch.full((ids.size(0),), ids.size(1), dtype=torch.long, device=ids.device)
        encoded = self.encoder(self.input_dropout(self._embed(ids)), lengths, state)
        hidden = self.output_dropout(encoded.outputs)
        if self.project is not None:
            hidden = self.project(hidden)
        return LMOutput(hidden, encoded.state)

    def logits(self, hidden: Tensor) -> Tensor:
        """``[..., output_size]`` → next-token scores ``[..., vocab_size]`` (their softmax is the distribution;
        the adaptive softmax gives its log-probabilities, which are such scores)."""
        if self.adaptive is not None:
            return self.adaptive.log_prob(hidden.reshape(-1, hidden.size(-1))).view(*hidden.shape[:-1], -1)
        weight = self.embed.weight if self.decoder is None else self.decoder.weight
        return nn.functional.linear(hidden, weight, self.output_bias)

    def nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Negative log-likelihood of each target: ``hidden [..., output_size]``, ``targets [...]`` → ``[N]``
        (float32; the adaptive softmax computes only the clusters the targets fall in)."""
        flat = hidden.reshape(-1, hidden.size(-1))
        if self.adaptive is not None:
            return -self.adaptive(flat.float(), targets.reshape(-1)).output
        return nn.functional.cross_entropy(self.logits(flat).float(), targets.reshape(-1), reduction="none")

    def step(self, ids: Tensor, state: tuple[Tensor, ...] | None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step of generation: ``ids [batch]`` → (log-probabilities ``[batch, vocab]``, new state).

        oneDNN's RNN kernel prepares its weights on every call, which a one-token call cannot amortise: without
        it a step of a 2 × 400 LSTM took 0.66 ms instead of 3.6 ms at batch 1 (2.4 vs 3.4 ms at batch 32) here,
        while whole sequences stay on oneDNN, which is as fast or faster for them.
        """
        with warnings.catch_warnings():  # the flags context re-applies oneDNN's TF32 setting, which warns on CPU
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
            with torch.backends.mkldnn.flags(enabled=False):
                output = self(ids.unsqueeze(1), state)
        return torch.log_softmax(self.logits(output.hidden[:, -1]).float(), dim=-1), output.state
