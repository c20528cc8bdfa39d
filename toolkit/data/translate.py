"""DataModule for translation: bitext (parallel sentences) → subword ids → length-bucketed batches.

The readers live in :mod:`toolkit.data.bitext` and the subword vocabulary in :mod:`toolkit.data.subword`
(neither imports Lightning, so the Predictor uses the same code).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from toolkit.data.batching import pad_ids
from toolkit.data.bitext import SentencePair, bitext_format, read_bitext, target_path
from toolkit.data.datamodule import BucketedDataModule, carve_dev
from toolkit.data.export import DataExport, DataInfo
from toolkit.data.readers import file_sha256
from toolkit.data.subword import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    BitextTokenizer,
    SubwordSettings,
    SubwordTokenizer,
    train_subword,
)
from toolkit.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranslateDataInfo(DataInfo):
    """What the translator is built from (``model.data_info``, linked by the CLI). The special token ids are the
    fixed ones of every tokenizer the toolkit trains (:mod:`toolkit.data.subword`)."""

    source_vocab_size: int
    target_vocab_size: int
    """Subword vocabulary sizes (equal, and one vocabulary, with ``joint_vocab``)."""


class BitextDataset(torch.utils.data.Dataset):
    """Source ids, target ids and the raw target text (the BLEU reference) per pair."""

    def __init__(self, sources: list[list[int]], targets: list[list[int]], references: list[str]) -> None:
        self.sources = [torch.tensor(ids) for ids in sources]
        self.targets = [torch.tensor(ids) for ids in targets]
        self.references = references
        # Bucketing by the longer side keeps both source and target padding low.
        self.lengths = [max(len(s), len(t)) for s, t in zip(sources, targets, strict=True)]

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        return self.sources[index], self.targets[index], self.references[index]


def collate_bitext(batch: list[tuple[torch.Tensor, torch.Tensor, str]]) -> dict:
    """Pad a list of pairs.

    Returns:
        ``source [B, S]``, ``source_lengths [B]``, ``target_in [B, T]`` (``<s> y``), ``target_out [B, T]``
        (``y </s>``), all right-padded with 0, and ``references`` (list of B raw target strings).
    """
    source, source_lengths = pad_ids([item[0] for item in batch], PAD_ID)
    bos, eos = torch.tensor([BOS_ID]), torch.tensor([EOS_ID])
    target_in, _ = pad_ids([torch.cat([bos, item[1]]) for item in batch], PAD_ID)
    target_out, _ = pad_ids([torch.cat([item[1], eos]) for item in batch], PAD_ID)
    return {"source": source, "source_lengths": source_lengths, "target_in": target_in, "target_out": target_out,
            "references": [item[2] for item in batch]}


class TranslateData(BucketedDataModule):
    """Sentence pairs → subword ids with a vocabulary trained on the training pairs only.

    Args:
        train_file: ``X.<source_lang>`` (plain or .gz; ``X.<target_lang>`` beside it is the target side) or
            a JSONL file with source/target fields.
        dev_file: validation pairs, same formats; if None, ``dev_fraction`` of the training pairs.
        test_file: optional test pairs for ``bilstm test``.
        source_lang: language suffix of source files (``de`` in ``train.de``).
        target_lang: language suffix of target files.
        source_field: JSONL source field.
        target_field: JSONL target field.
        subword_model: ``bpe`` or ``unigram``.
        vocab_size: subword vocabulary size (per language when ``joint_vocab`` is false).
        joint_vocab: one vocabulary for both languages (needed for shared embeddings).
        min_frequency: BPE merge threshold.
        lowercase: lower-case both sides (the output is then lower-case).
        max_length: drop training pairs with a side longer than this many subwords (dev/test are kept).
        dev_fraction: share of training pairs used as dev set when ``dev_file`` is None.
        split_seed: seed of that split and of the batch order.
        batch_size: training sentence pairs per batch.
        eval_batch_size: validation/test pairs per batch.
        num_workers: DataLoader worker processes.
        max_train_examples: use only the first N training pairs (quick experiments).
    """

    collate = staticmethod(collate_bitext)

    def __init__(
        self,
        train_file: str,
        dev_file: str | None = None,
        test_file: str | None = None,
        source_lang: str = "de",
        target_lang: str = "en",
        source_field: str = "source",
        target_field: str = "target",
        subword_model: str = "bpe",
        vocab_size: int = 8000,
        joint_vocab: bool = True,
        min_frequency: int = 2,
        lowercase: bool = False,
        max_length: int | None = 100,
        dev_fraction: float = 0.05,
        split_seed: int = 1234,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        max_train_examples: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.subword = SubwordSettings(model=subword_model, vocab_size=vocab_size, joint=joint_vocab,
                                       min_frequency=min_frequency, lowercase=lowercase)
        self.subword.validate()
        self.source_tokenizer: SubwordTokenizer | None = None
        self.target_tokenizer: SubwordTokenizer | None = None
        self.datasets: dict[str, BitextDataset] = {}
        self._sizes: dict[str, int] = {}

    def _read(self, path: str) -> list[SentencePair]:
        hp = self.hparams
        return read_bitext(path, hp.source_lang, hp.target_lang, hp.source_field, hp.target_field)

    # -- preparation (lazy so LightningCLI can link the vocabulary sizes into the model) ---------------

    def _prepare(self) -> None:
        if self.source_tokenizer is not None:
            return
        hp = self.hparams
        train = self._read(hp.train_file)
        if hp.dev_file:
            dev = self._read(hp.dev_file)
        else:
            if len(train) < 2:
                raise DataError(hp.train_file, "needs at least 2 pairs to carve a dev split", hint="give a dev_file")
            train, dev = carve_dev(train, hp.dev_fraction, hp.split_seed)
        if hp.max_train_examples:
            train = train[: hp.max_train_examples]
        sources, targets = [e.source for e in train], [e.target for e in train]
        if self.subword.joint:
            self.source_tokenizer = train_subword(sources + targets, self.subword, 2 * len(train))
            self.target_tokenizer = self.source_tokenizer
        else:
            self.source_tokenizer = train_subword(sources, self.subword, len(train))
            self.target_tokenizer = train_subword(targets, self.subword, len(train))
        self.datasets["train"] = self._encode(train, limit=hp.max_length)
        self.datasets["val"] = self._encode(dev)
        if hp.test_file:
            self.datasets["test"] = self._encode(self._read(hp.test_file))
        self._sizes = {"train_pairs": len(self.datasets["train"]), "dropped_long_pairs": len(train) - len(
            self.datasets["train"]), "dev_pairs": len(self.datasets["val"])}
        log.info("subword vocabulary %d/%d, %s", self.source_tokenizer.vocab_size, self.target_tokenizer.vocab_size,
                 self._sizes)

    def _encode(self, examples: list[SentencePair], limit: int | None = None) -> BitextDataset:
        sources = self.source_tokenizer.encode([e.source for e in examples])
        targets = self.target_tokenizer.encode([e.target for e in examples])
        keep = [i for i in range(len(examples)) if limit is None or max(len(sources[i]), len(targets[i])) <= limit]
        return BitextDataset([sources[i] for i in keep], [targets[i] for i in keep],
                               [examples[i].target for i in keep])

    @property
    def data_info(self) -> TranslateDataInfo:
        """Vocabulary sizes the model is built from (linked into ``model.data_info``)."""
        self._prepare()
        return TranslateDataInfo(self.source_tokenizer.vocab_size, self.target_tokenizer.vocab_size)

    def detokenize(self, sequences: list[list[int]]) -> list[str]:
        """Target ids → text (the model uses it for validation BLEU)."""
        self._prepare()
        return self.target_tokenizer.decode(sequences)

    def export(self) -> DataExport:
        """What the model directory needs from the data side: the subword tokenizer file(s) and settings."""
        self._prepare()
        hp = self.hparams
        if self.subword.joint:
            json_files = {"tokenizer.json": self.source_tokenizer.to_json()}
            names = {"source": "tokenizer.json", "target": "tokenizer.json"}
        else:
            json_files = {"source_tokenizer.json": self.source_tokenizer.to_json(),
                          "target_tokenizer.json": self.target_tokenizer.to_json()}
            names = {"source": "source_tokenizer.json", "target": "target_tokenizer.json"}
        files = [hp.train_file]
        if bitext_format(hp.train_file) == "text":
            files.append(str(target_path(hp.train_file, hp.source_lang, hp.target_lang)))
        preprocessing = BitextTokenizer(**self.subword.to_dict(), files=names, source_lang=hp.source_lang,
                                        target_lang=hp.target_lang)
        return DataExport(
            labels=None,
            tokenizer=preprocessing.to_dict(),
            json_files=json_files,
            record={"files": [str(Path(f)) for f in files], "sha256": file_sha256(*files), "dev_file": hp.dev_file,
                    **self._sizes},
        )
