"""DataModule for language models: corpus lines → one token stream → consecutive BPTT windows.

The stream is cut into ``batch_size`` columns (each a contiguous stretch of the corpus) and read ``bptt`` tokens at
a time, in order, so the model can carry its recurrent state from one window to the next (truncated
back-propagation through time). Under DDP each process reads its own columns (the stream is cut into
``batch_size × processes`` columns); evaluation shards the columns the same way, so summed token losses give
exactly the single-process perplexity.

A trained language model's directory is also input to other tasks (the tagger's LM features, ``init_from``):
:func:`open_lm_directory` opens one for them, once, and checks its text side (the tokenizer settings and the
vocabulary a reusing task looks words up in); :func:`toolkit.specs.lm.reuse_language_model` types its network
side (meta.json ``model_config``, the weights) from the same opened directory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from toolkit.artifact import WEIGHTS_FILE, ModelDir, load_model_dir
from toolkit.config import config_from_dict
from toolkit.data.datamodule import carve_dev
from toolkit.data.export import DataExport, DataInfo
from toolkit.data.lm_cache import TokenisedCorpus, load_corpus, save_corpus
from toolkit.data.lm_text import ChunkTokenizer, LMTokenizer, direction_checked, read_lines, token_stream
from toolkit.data.readers import file_sha256, read_labelled
from toolkit.data.vocab import LM_SPECIALS, Vocab
from toolkit.errors import ConfigError, DataError, ModelDirError


@dataclass(frozen=True)
class LMDataInfo(DataInfo):
    """What the language model is built from (``model.data_info``, linked by the CLI)."""

    vocab_size: int
    """Entries of the vocabulary (``<eos>``, ``<unk>`` and the corpus' types): the softmax."""
    direction: str = "forward"
    """The reading direction (``forward``, ``backward``)."""


@dataclass(frozen=True)
class LMReference(DataInfo):
    """Which language-model directory a model was built with: the plain form an opened one keeps in checkpoints."""

    path: str
    """The directory (resolved)."""
    sha256: str
    """Of its weights file, as its meta.json lists it: the same path holding another model is noticed."""

    def open(self, option: str) -> LMDirectory:
        """Open the directory again (:func:`open_lm_directory`) and check that it still holds the same weights.

        Raises:
            ConfigError: what :func:`open_lm_directory` raises, or other weights than the recorded ones.
        """
        opened = open_lm_directory(self.path, option)
        if opened.sha256 != self.sha256:
            raise ConfigError(f"{option}: {self.path} no longer holds the language model this model was built with "
                              f"(weights sha256 {opened.sha256[:12]}…, recorded {self.sha256[:12]}…); give that "
                              "directory again")
        return opened


@dataclass(frozen=True, eq=False)
class LMDirectory:
    """A language-model directory opened for another task to reuse: files checked (checksums, weights loaded),
    tokenizer settings typed, vocabulary read. What the reusing data module needs is here; the network side is
    typed from ``model_dir`` by :func:`toolkit.specs.lm.reuse_language_model`."""

    option: str
    """The setting that named it (``data.lm_forward``, ``model.init_from.backward``): errors name it."""
    path: Path
    """The directory, resolved."""
    tokenizer: LMTokenizer
    """How the LM read its text (``level``, ``lowercase``…): a reusing task reads its words the same way."""
    vocab: Vocab
    """Its vocabulary (``<eos>`` 0, ``<unk>`` 1, then the corpus' types)."""
    model_dir: ModelDir
    """The checked directory: meta.json and the loaded weights."""

    @property
    def sha256(self) -> str:
        """Of the weights file (meta.json's checksum, which loading checked)."""
        return self.model_dir.meta.files[WEIGHTS_FILE]["sha256"]

    def reference(self) -> LMReference:
        return LMReference(str(self.path), self.sha256)

    def to_dict(self) -> dict[str, Any]:
        """Its plain form in a checkpoint: the reference (path and sha256), not the contents."""
        return self.reference().to_dict()


def open_lm_directory(path: str | Path, option: str) -> LMDirectory:
    """Open a language-model directory (``bilstm fit`` of an ``lm`` config) for reuse by another task.

    The artifact layer checks the files (listed, checksums, weights readable); this checks that it holds a language
    model, types its tokenizer settings and reads its vocabulary, which must start with ``<eos>``, ``<unk>`` (a
    reusing task starts each sentence from ``<eos>`` = 0, as the LM was trained).

    Raises:
        ConfigError: naming ``option``: no such directory, a damaged one, another task's model, a bad vocabulary.
    """
    try:
        model_dir = load_model_dir(path)
    except ModelDirError as error:
        raise ConfigError(f"{option}: {error}; give a language-model directory written by `bilstm fit` of an lm "
                          "config") from None
    if model_dir.task != "lm":
        raise ConfigError(f"{option}: {path} holds a {model_dir.task!r} model, not a language model")
    try:
        tokenizer = config_from_dict(LMTokenizer, model_dir.meta.tokenizer, "meta.json tokenizer")
        tokenizer.validate()
        vocab = Vocab.from_json(model_dir.json_file("vocab.json"))
    except (ConfigError, ModelDirError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{option}: {path} is not a valid language-model directory ({error}); re-export the "
                          "language model") from None
    if vocab.specials != LM_SPECIALS:
        raise ConfigError(f"{option}: {path}/vocab.json does not start with {list(LM_SPECIALS)}; re-export the "
                          "language model")
    return LMDirectory(option, Path(model_dir.path).resolve(), tokenizer, vocab, model_dir)


def batchify(ids: torch.Tensor, columns: int) -> torch.Tensor:
    """A 1-D stream ``[N]`` → ``[columns, N // columns]`` (the tail that does not fill a column is dropped)."""
    width = ids.numel() // columns
    if width < 2:
        raise DataError("the corpus", f"has {ids.numel()} tokens, too few for {columns} columns of at least 2",
                        hint="use a smaller batch size or more text")
    return ids[: width * columns].view(columns, width)


class StreamWindows(IterableDataset):
    """Consecutive windows ``{"input": [B, L], "target": [B, L]}`` of ``columns [B, T]`` (target: input shifted)."""

    def __init__(self, columns: torch.Tensor, bptt: int) -> None:
        self.columns, self.bptt = columns, bptt

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        width = self.columns.size(1)
        for start in range(0, width - 1, self.bptt):
            length = min(self.bptt, width - 1 - start)
            yield {"input": self.columns[:, start : start + length],
                   "target": self.columns[:, start + 1 : start + 1 + length]}

    def __len__(self) -> int:
        return math.ceil((self.columns.size(1) - 1) / self.bptt)


class LMData(pl.LightningDataModule):
    """Plain text or JSONL → a word (or character) stream for a recurrent language model.

    Args:
        train_file: .txt (one document or sentence per line), .jsonl (``text_field``) or a CoNLL column file (each
            sentence a line), optionally .gz; a list of files is read as one corpus, in order.
        dev_file: validation text; if None, ``dev_fraction`` of the training lines (fixed seed).
        test_file: optional test text for ``bilstm test``.
        text_field: the JSONL text field.
        dev_fraction: share of training lines used as dev set when ``dev_file`` is None.
        split_seed: seed of that split.
        split: ``whitespace`` (pre-tokenised corpora such as PTB) or ``spacy`` (the classifier's tokenizer).
        level: ``word`` or ``char``.
        lowercase: lower-case the text.
        lang: spaCy language (``split: spacy``).
        html_breaks: ``split: spacy``: read ``<br />`` as whitespace.
        max_vocab: keep at most this many types (``<eos>`` and ``<unk>`` included; None = all).
        min_freq: drop types seen fewer times (they become ``<unk>``).
        direction: ``forward``, or ``backward`` (the model reads the stream right to left).
        batch_size: columns the training stream is cut into (per process).
        bptt: tokens per training window (truncated back-propagation through time).
        eval_batch_size: columns of the dev/test stream.
        eval_bptt: tokens per dev/test window.
        max_train_lines: use only the first N training lines (quick experiments).
        exclude_dev_of: one of the training files that is also a classifier's labelled training file: its
            records are split exactly as ``ClassifyData`` splits them (``carve_dev`` with
            ``exclude_dev_fraction`` and ``exclude_split_seed``, records read with ``exclude_label_field``) and the
            classifier's dev records are left out, so that pretraining never reads the text the classifier is
            scored on.
        exclude_dev_fraction, exclude_split_seed, exclude_label_field: the classifier's ``dev_fraction``,
            ``split_seed`` and ``label_field``.
        corpus_cache: a directory for the tokenised corpus (toolkit/data/lm_cache.py): written after tokenising,
            read instead of tokenising by later runs with the same data settings (the forward and backward
            models share one). None: tokenise every run.
        tokenize_workers: processes that tokenise (``split: spacy``) in chunks of 1,024 lines; the tokens and their
            order are those of one process. spaCy's tokenizer runs ~170k tokens/s on one core, so IMDB's 20M
            tokens take about 2 minutes in one process: worth spreading on a many-core (GPU) machine.
    """

    def __init__(
        self,
        train_file: str | list[str],
        dev_file: str | None = None,
        test_file: str | None = None,
        text_field: str = "text",
        dev_fraction: float = 0.05,
        split_seed: int = 1234,
        split: str = "whitespace",
        level: str = "word",
        lowercase: bool = False,
        lang: str = "en",
        html_breaks: bool = True,
        max_vocab: int | None = None,
        min_freq: int = 1,
        direction: str = "forward",
        batch_size: int = 32,
        bptt: int = 70,
        eval_batch_size: int = 10,
        eval_bptt: int = 70,
        max_train_lines: int | None = None,
        exclude_dev_of: str | None = None,
        exclude_dev_fraction: float = 0.1,
        exclude_split_seed: int = 1234,
        exclude_label_field: str = "label",
        tokenize_workers: int = 1,
        corpus_cache: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer_settings = LMTokenizer(split=split, level=level, lowercase=lowercase, html_breaks=html_breaks,
                                              lang=lang)
        self.tokenizer_settings.validate()
        direction_checked(direction)
        if not isinstance(tokenize_workers, int) or tokenize_workers < 1:
            raise ConfigError(f"data.tokenize_workers must be a whole number ≥ 1, got {tokenize_workers!r}")
        self.train_files = [train_file] if isinstance(train_file, str) else list(train_file)
        if exclude_dev_of is not None and exclude_dev_of not in self.train_files:
            raise ConfigError(f"data.exclude_dev_of {exclude_dev_of!r} is not one of data.train_file "
                              f"{self.train_files}; name the classifier training file exactly as in train_file")
        self.excluded = 0
        self.data_sha256 = ""
        self.vocab: Vocab | None = None
        self.streams: dict[str, torch.Tensor] = {}
        self.lines: dict[str, int] = {}

    def _read(self, files: list[str]) -> list[str]:
        return [text for path in files for text in self._read_one(path)]

    def _read_one(self, path: str) -> list[str]:
        hp = self.hparams
        if path != hp.exclude_dev_of:
            return [text for _, text in read_lines(path, hp.text_field)]
        # The classifier's own reader and split, so the left-out records are exactly its dev set.
        records = read_labelled(path, hp.text_field, hp.exclude_label_field)
        kept, held_out = carve_dev(records, hp.exclude_dev_fraction, hp.exclude_split_seed)
        self.excluded = len(held_out)
        return [record.text for record in kept if record.text.strip()]

    def corpus(self) -> tuple[list[str], list[str]]:
        """The training and dev texts the model reads (before tokenising): what the no-leak checks inspect."""
        hp = self.hparams
        train = self._read(self.train_files)
        if hp.dev_file:
            return train, self._read([hp.dev_file])
        if len(train) < 2:
            raise DataError(self.train_files[0], "needs at least 2 lines to carve a dev split", hint="give a dev_file")
        return carve_dev(train, hp.dev_fraction, hp.split_seed)

    def _data_files(self) -> list[str]:
        """The training and dev files: what the model directory records and fingerprints."""
        return [*self.train_files, *([self.hparams.dev_file] if self.hparams.dev_file else [])]

    def _input_files(self) -> list[str]:
        """Every file read, the test file too: what a corpus cache must have been made from."""
        return [*self._data_files(), *([self.hparams.test_file] if self.hparams.test_file else [])]

    def _cache_settings(self) -> dict[str, Any]:
        """Every setting the vocabulary and the forward streams depend on (not direction or batching)."""
        hp = self.hparams
        keys = ("dev_file", "test_file", "text_field", "dev_fraction", "split_seed", "max_vocab", "min_freq",
                "max_train_lines", "exclude_dev_of", "exclude_dev_fraction", "exclude_split_seed",
                "exclude_label_field")
        return {"train_file": self.train_files, "tokenizer": self.tokenizer_settings.to_dict(),
                **{key: hp[key] for key in keys}}

    def _tokenise(self) -> TokenisedCorpus:
        hp = self.hparams
        train, dev = self.corpus()
        if hp.max_train_lines:
            train = train[: hp.max_train_lines]
        if not train:
            raise DataError(self.train_files[0], "has no text", hint="one document or sentence per line")
        with ChunkTokenizer(self.tokenizer_settings, hp.tokenize_workers) as tokenised:
            train_tokens = tokenised(train, "train")
            dev_tokens = tokenised(dev, "dev")
            test_tokens = tokenised(self._read([hp.test_file]), "test") if hp.test_file else None
        vocab = Vocab.build(train_tokens, hp.max_vocab, hp.min_freq, specials=LM_SPECIALS)
        streams = {"train": train_tokens, "val": dev_tokens}
        if test_tokens is not None:
            streams["test"] = test_tokens
        return TokenisedCorpus(
            vocab, {name: torch.tensor(vocab.encode(token_stream(rows, False))) for name, rows in streams.items()},
            {"train": len(train), "dev": len(dev)}, self.excluded,
            file_sha256(*self._data_files()))

    def _prepare(self) -> None:
        if self.vocab is not None:
            return
        hp = self.hparams
        corpus = None
        if hp.corpus_cache:
            corpus = load_corpus(hp.corpus_cache, self._cache_settings(), self._input_files())
        if corpus is None:
            corpus = self._tokenise()
            if hp.corpus_cache:
                save_corpus(hp.corpus_cache, self._cache_settings(), self._input_files(), corpus)
        # a backward model reads the whole stream reversed (token_stream(..., backward=True))
        backward = hp.direction == "backward"
        self.vocab, self.lines, self.excluded = corpus.vocab, corpus.lines, corpus.excluded
        self.data_sha256 = corpus.sha256
        self.streams = {name: stream.flip(0) if backward else stream for name, stream in corpus.streams.items()}

    def setup(self, stage: str | None = None) -> None:
        self._prepare()
        if stage == "test" and "test" not in self.streams:
            raise DataError("data.test_file", "is not set", hint="pass --data.init_args.test_file FILE")

    def _loader(self, split: str, columns: int, bptt: int) -> DataLoader:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        shares = batchify(self.streams[split], columns * world)[rank::world]  # this process's columns
        return DataLoader(StreamWindows(shares, bptt), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, self.hparams.bptt)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size, self.hparams.eval_bptt)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size, self.hparams.eval_bptt)

    @property
    def data_info(self) -> LMDataInfo:
        """Vocabulary size and reading direction the model is built from (linked into ``model.data_info``)."""
        self._prepare()
        return LMDataInfo(len(self.vocab), self.hparams.direction)

    def vocabulary_tokens(self) -> list[str]:
        self._prepare()
        return self.vocab.tokens

    def export(self) -> DataExport:
        """The vocabulary and tokenizer settings for the model directory (the lm spec writes them)."""
        self._prepare()
        files = self._data_files()
        return DataExport(
            labels=None, tokenizer=self.tokenizer_settings.to_dict(), json_files={"vocab.json": self.vocab.to_json()},
            record={"files": [str(Path(f)) for f in files], "sha256": self.data_sha256,
                    "train_tokens": int(self.streams["train"].numel()), "dev_tokens": int(self.streams["val"].numel()),
                    **{f"{split}_lines": count for split, count in self.lines.items()},
                    **({"excluded": {"file": str(self.hparams.exclude_dev_of), "records": self.excluded,
                                     "dev_fraction": self.hparams.exclude_dev_fraction,
                                     "split_seed": self.hparams.exclude_split_seed}}
                       if self.hparams.exclude_dev_of else {})},
        )
