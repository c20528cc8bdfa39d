"""DataModule for text classification from JSONL/CSV files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from toolkit.data.batching import pad_ids
from toolkit.data.datamodule import BucketedDataModule, carve_dev
from toolkit.data.export import DataExport, DataInfo
from toolkit.data.readers import Example, check_labels, file_sha256, read_labelled
from toolkit.data.tokenize import Tokenizer, TokenizerSettings
from toolkit.data.vocab import Vocab
from toolkit.errors import DataError
from toolkit.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifyDataInfo(DataInfo):
    """What the classifier is built from (``model.data_info``, linked by the CLI)."""

    vocab_size: int
    """Entries of the vocabulary (padding and unknown included): the embedding table's rows."""
    labels: tuple[str, ...]
    """The classes in output order (sorted)."""


class EncodedDataset(torch.utils.data.Dataset):
    """Token-id tensors and label ids."""

    def __init__(self, ids: list[torch.Tensor], labels: list[int]) -> None:
        self.ids = ids
        self.labels = labels
        self.lengths = [len(seq) for seq in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.ids[index], self.labels[index]


def collate_classification(batch: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """Pad a list of ``(ids, label)`` into ``ids [B, T]``, ``lengths [B]``, ``labels [B]``."""
    ids, lengths = pad_ids([item[0] for item in batch])
    return {"ids": ids, "lengths": lengths, "labels": torch.tensor([item[1] for item in batch])}


class ClassifyData(BucketedDataModule):
    """Labelled texts → length-bucketed batches of token ids.

    Args:
        train_file: JSONL or CSV/TSV file (optionally .gz) with a text and a label field.
        dev_file: validation file; if None, ``dev_fraction`` of the training file is carved off.
        test_file: optional test file for ``bilstm test``.
        text_field: name of the text field (JSON key or CSV header).
        label_field: name of the label field.
        dev_fraction: share of the training file used as dev set when ``dev_file`` is None.
        split_seed: seed of that split.
        max_vocab: keep at most this many vocabulary entries (most frequent first).
        min_freq: drop tokens seen fewer times in the training data.
        lowercase: lower-case tokens.
        max_tokens: cut texts to ``max_tokens`` tokens.
        truncate: which tokens a cut text keeps: ``head``, ``tail`` or ``head+tail``.
        lang: spaCy language of the rule-based tokenizer.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: DataLoader worker processes.
        max_train_examples: use only the first N training examples after the split (quick experiments).
    """

    collate = staticmethod(collate_classification)

    def __init__(
        self,
        train_file: str,
        dev_file: str | None = None,
        test_file: str | None = None,
        text_field: str = "text",
        label_field: str = "label",
        dev_fraction: float = 0.1,
        split_seed: int = 1234,
        max_vocab: int | None = 50_000,
        min_freq: int = 1,
        lowercase: bool = True,
        max_tokens: int | None = None,
        truncate: str = "head",
        lang: str = "en",
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        max_train_examples: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer_settings = TokenizerSettings(lang=lang, lowercase=lowercase, max_tokens=max_tokens,
                                                    truncate=truncate)
        self.vocab: Vocab | None = None
        self.labels: list[str] = []
        self.datasets: dict[str, EncodedDataset] = {}

    # -- preparation (lazy so LightningCLI can link vocab size and labels into the model) --------------

    def _prepare(self) -> None:
        if self.vocab is not None:
            return
        hp = self.hparams
        train = read_labelled(hp.train_file, hp.text_field, hp.label_field)
        if hp.dev_file:
            dev = read_labelled(hp.dev_file, hp.text_field, hp.label_field)
        else:
            if len(train) < 2:
                raise DataError(hp.train_file, "needs at least 2 records to carve a dev split", hint="give a dev_file")
            train, dev = carve_dev(train, hp.dev_fraction, hp.split_seed)
        if hp.max_train_examples:
            train = train[: hp.max_train_examples]
        self.labels = sorted({example.label for example in train})
        if len(self.labels) < 2:
            raise DataError(hp.train_file, f"has a single label {self.labels}; a classifier needs at least two")
        check_labels(dev, self.labels, hp.dev_file or hp.train_file)
        tokenizer = Tokenizer(self.tokenizer_settings)

        def tokens(examples: list[Example], split: str) -> list[list[str]]:
            texts = (example.text for example in examples)
            return tokenizer.tokenize_many(progress(texts, f"tokenising {split}", len(examples), "texts"))

        train_tokens = tokens(train, "train")
        self.vocab = Vocab.build(train_tokens, hp.max_vocab, hp.min_freq)
        self.datasets["train"] = self._encode(train, train_tokens)
        self.datasets["val"] = self._encode(dev, tokens(dev, "dev"))
        if hp.test_file:
            test = read_labelled(hp.test_file, hp.text_field, hp.label_field)
            check_labels(test, self.labels, hp.test_file)
            self.datasets["test"] = self._encode(test, tokens(test, "test"))
        log.info("vocabulary %d tokens, labels %s, train %d, dev %d",
                 len(self.vocab), self.labels, len(train), len(dev))

    def _encode(self, examples: list[Example], tokens: list[list[str]]) -> EncodedDataset:
        label_index = {label: i for i, label in enumerate(self.labels)}
        # A text with no tokens (e.g. only markup) becomes one unknown token rather than a zero-length row.
        ids = [torch.tensor(self.vocab.encode(toks) or [Vocab.unk_index]) for toks in tokens]
        return EncodedDataset(ids, [label_index[example.label] for example in examples])

    @property
    def data_info(self) -> ClassifyDataInfo:
        """Sizes and labels the model is built from (linked into ``model.data_info`` by the CLI)."""
        self._prepare()
        return ClassifyDataInfo(len(self.vocab), tuple(self.labels))

    def export(self) -> DataExport:
        """What the model directory needs from the data side (the classify spec writes it)."""
        self._prepare()
        files = [self.hparams.train_file] + ([self.hparams.dev_file] if self.hparams.dev_file else [])
        return DataExport(
            labels=list(self.labels),
            tokenizer=self.tokenizer_settings.to_dict(),
            json_files={"vocab.json": self.vocab.to_json()},
            record={"files": [str(Path(f)) for f in files], "sha256": file_sha256(*files),
                    "train_examples": len(self.datasets["train"]), "dev_examples": len(self.datasets["val"])},
        )

    def vocabulary_tokens(self) -> list[str]:
        """Vocabulary in index order (used to initialise pretrained embeddings)."""
        self._prepare()
        return self.vocab.tokens
