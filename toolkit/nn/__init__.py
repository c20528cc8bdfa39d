"""Plain-torch building blocks: tensors in, tensors out (no Lightning, no data handling)."""

from toolkit.nn.classifier import ClassifierConfig, TextClassifierNet
from toolkit.nn.embeddings import GLOVE_PACKAGE, WordEmbedding, load_pretrained
from toolkit.nn.encoder import EncoderConfig, EncoderOutput, RecurrentEncoder
from toolkit.nn.pooling import SequencePooling

__all__ = [
    "GLOVE_PACKAGE",
    "ClassifierConfig",
    "EncoderConfig",
    "EncoderOutput",
    "RecurrentEncoder",
    "SequencePooling",
    "TextClassifierNet",
    "WordEmbedding",
    "load_pretrained",
]
