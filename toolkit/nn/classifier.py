"""Text classifier network: embeddings → recurrent encoder → pooling → linear head (plain torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from toolkit.nn.embeddings import WordEmbedding
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder
from toolkit.nn.pooling import SequencePooling, parse_pooling


@dataclass
class ClassifyNetConfig:
    """Architecture of a :class:`ClassifyNet` (sizes that come from the data are separate)."""

    embedding_dim: int = 100
    """Word vector size (50 for ``glove-6b-50d``)."""
    pretrained: str | None = None
    """Initial word vectors: ``glove-6b-50d`` or a word2vec/GloVe text file; None = random."""
    freeze_embeddings: bool = False
    """Keep the (pretrained) word vectors fixed during training."""
    embedding_dropout: float = 0.0
    """Dropout on the word vectors."""
    word_dropout: float = 0.0
    """Training-time probability of replacing a word by the unknown token."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The recurrent encoder."""
    pooling: str = "max"
    """``last``, ``mean``, ``max``, ``attention`` or a ``+`` combination such as ``max+mean``."""
    head_dropout: float = 0.0
    """Dropout before the output layer."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field."""
        self.encoder.validate()
        parse_pooling(self.pooling)
        if self.embedding_dim < 1:
            raise ValueError("embedding_dim must be >= 1")


class ClassifyNet(nn.Module):
    """Token ids → class logits.

    Args:
        config: architecture.
        vocab_size: rows of the embedding table (from the training vocabulary).
        num_classes: size of the label set.
    """

    def __init__(self, config: ClassifyNetConfig, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embed = WordEmbedding(vocab_size, config.embedding_dim, config.embedding_dropout, config.word_dropout)
        self.encoder = RecurrentEncoder(config.embedding_dim, config.encoder)
        self.pool = SequencePooling(config.pooling, self.encoder.output_size, config.encoder.merge)
        self.dropout = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(self.pool.output_size, num_classes)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """``ids [batch, time]`` (0 = padding), ``lengths [batch]`` → logits ``[batch, num_classes]``."""
        encoded = self.encoder(self.embed(ids), lengths)
        return self.head(self.dropout(self.pool(encoded, lengths)))
