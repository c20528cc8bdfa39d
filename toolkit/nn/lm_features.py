"""Frozen language-model states as word features (TagLM, Peters et al. 2017).

A forward LM reads ``<eos> w1 … wn`` and its top layer's state after ``wi`` describes ``wi`` in its left context;
a backward LM reads ``<eos> wn … w1`` (the way it was trained: each reversed line starts with its ``<eos>``) and
gives ``wi`` in its right context. Only the embedding table and the recurrent encoder of the LM are kept: the
softmax is not needed for features. The weights never train (TagLM found fine-tuning them does not help and it
costs a backward pass through the LM), and the module stays in eval mode, so the LM's own dropout is off.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.nn.encoder import RecurrentEncoder
from toolkit.nn.lm import LMNetConfig

EOS_ID = 0
"""``<eos>``: index 0 of every LM vocabulary (``toolkit.data.vocab.LM_SPECIALS``)."""


def reverse_padded(values: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first ``lengths[b]`` positions of ``values [B, T, ...]``; padding stays where it is."""
    steps = torch.arange(values.size(1), device=values.device).unsqueeze(0)
    lengths = lengths.to(values.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    if values.dim() > 2:
        index = index.view(*index.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return values.gather(1, index)


class LanguageModelFeatures(nn.Module):
    """Word ids in an LM's vocabulary ``[B, T]`` → the LM's top-layer states ``[B, T, output_size]`` (frozen).

    Args:
        config: the LM's network config (meta.json ``model_config.network`` of the LM directory).
        vocab_size: the LM's vocabulary size.
        direction: ``forward`` or ``backward``.
        with_embeddings: put the LM's word vector of each word before its state (ELMo's layer 0).
    """

    def __init__(self, config: LMNetConfig, vocab_size: int, direction: str,
                 with_embeddings: bool = False) -> None:
        super().__init__()
        config.validate()
        self.direction = direction
        self.with_embeddings = with_embeddings
        self.embed = nn.Embedding(vocab_size, config.embedding_dim)
        self.encoder = RecurrentEncoder(config.embedding_dim, config.encoder)
        self.output_size = self.encoder.output_size + (config.embedding_dim if with_embeddings else 0)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LanguageModelFeatures:
        """Always eval: the LM's dropout (and DropConnect) must not act on features."""
        return self

    def load_from_lm(self, lm_state: dict[str, Tensor]) -> None:
        """Copy the LM's ``embed.*`` and ``encoder.*`` tensors (strict: a mismatch raises naming the tensors)."""
        own = {name: tensor for name, tensor in lm_state.items() if name.startswith(("embed.", "encoder."))}
        self.load_state_dict(own, strict=True)

    def forward(self, ids: Tensor, lengths: Tensor, offsets: Tensor | None = None,
                sentence_lengths: Tensor | None = None) -> Tensor:
        """``ids [B, L]`` (right-padded), ``lengths [B]`` → ``[B, T, output_size]`` (zeros at padding): per word
        its word vector (``with_embeddings``) and the LM's top-layer state after reading it.

        With document context the ids hold more than the sentence (a forward LM reads the tokens before it, a
        backward one those after it): ``offsets [B]`` is where each sentence starts among its ids and
        ``sentence_lengths [B]`` its length, and only the sentence's words are returned (``T`` = the longest).
        """
        if self.direction == "backward":
            ids = reverse_padded(ids, lengths)
        start = torch.full((ids.size(0), 1), EOS_ID, dtype=ids.dtype, device=ids.device)
        with torch.no_grad():
            embedded = self.embed(torch.cat([start, ids], dim=1))
            states = self.encoder(embedded, lengths + 1).outputs[:, 1:]
            if self.with_embeddings:
                states = torch.cat([embedded[:, 1:], states], dim=-1)
        if self.direction == "backward":
            states = reverse_padded(states, lengths)
        if offsets is not None:  # the sentence's own positions, [B, T]
            sentence_lengths = sentence_lengths.to(ids.device)
            steps = torch.arange(int(sentence_lengths.max()), device=ids.device).unsqueeze(0)
            index = (offsets.to(ids.device).unsqueeze(1) + steps).clamp(max=states.size(1) - 1)
            states = states.gather(1, index.unsqueeze(-1).expand(-1, -1, states.size(-1)))
            lengths = sentence_lengths
        mask = torch.arange(states.size(1), device=ids.device).unsqueeze(0) < lengths.to(ids.device).unsqueeze(1)
        return states * mask.unsqueeze(-1).to(states.dtype)
