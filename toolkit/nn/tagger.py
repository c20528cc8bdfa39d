"""Sequence tagger network: word/casing/character/transformer/LM features → recurrent encoder → CRF or softmax."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from toolkit.nn.crf import CRF
from toolkit.nn.embeddings import WordEmbedding
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder
from toolkit.nn.features import CharBiLSTM, CharCNN, LockedDropout
from toolkit.nn.lm import LMNetConfig
from toolkit.nn.lm_features import LanguageModelFeatures
from toolkit.nn.transformer import TransformerFeaturesConfig, TransformerWordFeatures

CHAR_ENCODERS = ("cnn", "lstm", "none")
DECODERS = ("crf", "softmax")


@dataclass
class TagNetConfig:
    """Architecture of a :class:`TagNet` (sizes from the data are separate)."""

    embedding_dim: int = 100
    """Word vector size (50 for ``glove-6b-50d``)."""
    pretrained: str | None = None
    """Initial word vectors: ``glove-6b-50d`` or a word2vec/GloVe text file; None = random."""
    freeze_embeddings: bool = False
    """Keep word vectors fixed."""
    word_dropout: float = 0.05
    """Training-time probability of replacing a word by the unknown token."""
    casing_dim: int = 8
    """Size of the casing-class embedding (0 = no casing feature)."""
    chars: str = "cnn"
    """Character encoder: ``cnn`` (Ma & Hovy), ``lstm`` (Lample et al.) or ``none``."""
    char_dim: int = 30
    """Character embedding size."""
    char_hidden: int = 50
    """CNN filters, or LSTM units per direction."""
    transformer: TransformerFeaturesConfig = field(default_factory=TransformerFeaturesConfig)
    """Pooling/fine-tuning of transformer features (used when the data names a transformer)."""
    dropout: float = 0.5
    """Locked (variational) dropout on the word features and on the encoder outputs."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(hidden_size=256))
    """The recurrent encoder."""
    lm_embeddings: bool = False
    """With LM features (``data.lm_forward``/``lm_backward``): also the LMs' word vectors, not only their states."""
    decoder: str = "crf"
    """``crf`` (linear-chain CRF) or ``softmax`` (independent per-token; decoding still obeys the scheme)."""

    def validate(self) -> None:
        self.encoder.validate()
        if self.chars not in CHAR_ENCODERS:
            raise ValueError(f"chars must be one of {CHAR_ENCODERS}, got {self.chars!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")


class TagNet(nn.Module):
    """Batch of encoded sentences → per-token tag scores, CRF loss and decoding.

    Args:
        config: architecture.
        vocab_size: word vocabulary size.
        num_chars: character vocabulary size.
        num_tags: tag set size.
        allowed: transition constraints ``(transitions, start, end)`` of the tag scheme.
        transformer_path: local HF model directory when transformer features are used.
        load_transformer_weights: False when the weights come from a model directory instead.
        num_casings: number of casing classes (``len(toolkit.data.casing.CASINGS)``, padding included).
        language_models: ``{"forward"|"backward": (LM network config, LM vocabulary size)}``: frozen LMs whose
            states join the word features (TagLM); their weights are part of this network's (``lm_forward.*``).
    """

    def __init__(self, config: TagNetConfig, vocab_size: int, num_chars: int, num_tags: int,
                 allowed: tuple[Tensor, Tensor, Tensor] | None = None, transformer_path: str | None = None,
                 load_transformer_weights: bool = True, num_casings: int = 8,
                 language_models: dict[str, tuple[LMNetConfig, int]] | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embed = WordEmbedding(vocab_size, config.embedding_dim, word_dropout=config.word_dropout)
        size = config.embedding_dim
        self.casing = nn.Embedding(num_casings, config.casing_dim, padding_idx=0) if config.casing_dim else None
        size += config.casing_dim
        self.chars = None
        if config.chars == "cnn":
            self.chars = CharCNN(num_chars, config.char_dim, config.char_hidden)
        elif config.chars == "lstm":
            self.chars = CharBiLSTM(num_chars, config.char_dim, config.char_hidden)
        size += self.chars.output_size if self.chars is not None else 0
        self.transformer = None
        if transformer_path:
            self.transformer = TransformerWordFeatures(transformer_path, config.transformer, load_transformer_weights)
            size += self.transformer.output_size
        self.lm_directions = sorted(language_models or {}, reverse=True)  # forward first
        for direction in self.lm_directions:
            lm_config, lm_vocab_size = language_models[direction]
            features = LanguageModelFeatures(lm_config, lm_vocab_size, direction, config.lm_embeddings)
            setattr(self, f"lm_{direction}", features)
            size += features.output_size
        self.dropout = LockedDropout(config.dropout)
        self.encoder = RecurrentEncoder(size, config.encoder)
        self.project = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = CRF(num_tags, allowed)
        if config.decoder == "softmax":
            self.crf.requires_grad_(False)  # transitions stay 0: decoding only applies the constraints

    def lm_features(self, batch: dict[str, Tensor]) -> Tensor:
        """The frozen LMs' states ``[B, T, sum of their sizes]`` for ``lm_forward``/``lm_backward`` ids ``[B, T]``
        (with document context ``[B, L]`` ids, their ``lm_<direction>_lengths`` and ``_offsets``: see
        :meth:`LanguageModelFeatures.forward`)."""
        parts = []
        for direction in self.lm_directions:
            key = f"lm_{direction}"
            if f"{key}_offsets" in batch:
                parts.append(getattr(self, key)(batch[key], batch[f"{key}_lengths"], batch[f"{key}_offsets"],
                                                batch["lengths"]))
            else:
                parts.append(getattr(self, key)(batch[key], batch["lengths"]))
        return torch.cat(parts, dim=-1)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Tag scores ``[B, T, num_tags]`` from the tensors of :meth:`TaggingFeaturizer.collate`."""
        words = batch["words"]
        parts = [self.embed(words)]
        if self.casing is not None:
            parts.append(self.casing(batch["casing"]))
        if self.chars is not None:
            parts.append(self.chars(batch["chars"]))
        if "transformer_features" in batch:
            parts.append(batch["transformer_features"].to(parts[0].dtype))
        elif self.transformer is not None:
            parts.append(self.transformer(batch["subwords"], batch["subword_mask"], batch["subword_words"],
                                          words.size(1)))
        if "lm_features" in batch:  # computed once before training (see TagModule.on_fit_start)
            parts.append(batch["lm_features"].to(parts[0].dtype))
        elif self.lm_directions:
            parts.append(self.lm_features(batch).to(parts[0].dtype))
        features = self.dropout(torch.cat(parts, dim=-1))
        encoded = self.encoder(features, batch["lengths"]).outputs
        return self.project(self.dropout(encoded))

    def mask(self, batch: dict[str, Tensor]) -> Tensor:
        """``[B, T]`` True at real tokens."""
        lengths = batch["lengths"].to(batch["words"].device)
        return torch.arange(batch["words"].size(1), device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)

    def loss(self, scores: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Mean negative log-likelihood per sentence (CRF) or mean token cross-entropy (softmax)."""
        mask = self.mask(batch)
        if self.config.decoder == "crf":
            return -self.crf.log_likelihood(scores, batch["tags"], mask).mean()
        return nn.functional.cross_entropy(scores[mask], batch["tags"][mask])

    def decode(self, scores: Tensor, batch: dict[str, Tensor], with_marginals: bool = False
               ) -> tuple[list[list[int]], Tensor | None]:
        """Best valid tag ids per sentence and, optionally, marginals ``[B, T, num_tags]``."""
        mask = self.mask(batch)
        scores = scores.float()
        if self.config.decoder == "softmax":
            scores = scores.log_softmax(-1)
        paths = self.crf.viterbi(scores, mask)
        marginals = None
        if with_marginals:
            marginals = self.crf.marginals(scores, mask) if self.config.decoder == "crf" else scores.exp()
        return paths, marginals
