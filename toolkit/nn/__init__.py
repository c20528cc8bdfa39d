"""Plain-torch building blocks: tensors in, tensors out (no Lightning, no data handling, no file reading)."""

from toolkit.nn.classifier import ClassifierConfig, TextClassifierNet
from toolkit.nn.embeddings import WordEmbedding
from toolkit.nn.encoder import EncoderConfig, EncoderOutput, RecurrentEncoder
from toolkit.nn.pooling import SequencePooling

__all__ = [
    "ClassifierConfig",
    "EncoderConfig",
    "EncoderOutput",
    "RecurrentEncoder",
    "SequencePooling",
    "TextClassifierNet",
    "WordEmbedding",
]
