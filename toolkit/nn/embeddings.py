"""Word embeddings: trainable, optionally initialised from pretrained vectors (given as tensors), with word dropout.

Reading vector files is the data layer's job (:mod:`toolkit.data.vectors`); this module only takes tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class WordEmbedding(nn.Module):
    """Token-id lookup with word dropout and dropout.

    Args:
        vocab_size: number of rows (index 0 is padding, 1 is unknown).
        dim: vector size.
        dropout: dropout on the vectors.
        word_dropout: training-time probability of replacing a token by the unknown token, which
            teaches the model what to do with words it has never seen.
        unk_index: row of the unknown token.
    """

    def __init__(self, vocab_size: int, dim: int, dropout: float = 0.0, word_dropout: float = 0.0,
                 unk_index: int = 1) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.dropout = nn.Dropout(dropout)
        self.word_dropout = word_dropout
        self.unk_index = unk_index

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def initialise_from(self, vectors: Tensor, found: Tensor, freeze: bool = False) -> None:
        """Copy pretrained vectors into the rows that have one.

        Args:
            vectors: ``[vocab_size, dim]`` (rows without a vector are ignored).
            found: ``[vocab_size]`` bool, True where ``vectors`` holds a pretrained vector.
            freeze: keep the whole table fixed during training.
        """
        if vectors.shape != self.embedding.weight.shape:
            raise ValueError(f"pretrained vectors {tuple(vectors.shape)} do not fit the embedding table "
                             f"{tuple(self.embedding.weight.shape)}")
        with torch.no_grad():
            self.embedding.weight[found] = vectors[found].to(self.embedding.weight)
        self.embedding.weight.requires_grad_(not freeze)

    def forward(self, ids: Tensor) -> Tensor:
        """``ids [batch, time]`` → vectors ``[batch, time, dim]``."""
        if self.training and self.word_dropout > 0:
            drop = (torch.rand(ids.shape, device=ids.device) < self.word_dropout) & (ids > 1)
            ids = ids.masked_fill(drop, self.unk_index)
        return self.dropout(self.embedding(ids))
