"""Plain-torch building blocks: tensors in, tensors out (no Lightning, no data handling, no file reading)."""

from toolkit.nn.classifier import ClassifyNet, ClassifyNetConfig
from toolkit.nn.embeddings import WordEmbedding
from toolkit.nn.encoder import EncoderConfig, EncoderOutput, RecurrentEncoder
from toolkit.nn.pooling import SequencePooling

__all__ = [
    "ClassifyNet",
    "ClassifyNetConfig",
    "EncoderConfig",
    "EncoderOutput",
    "RecurrentEncoder",
    "SequencePooling",
    "WordEmbedding",
]
