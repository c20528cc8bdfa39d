"""DataModule for text classification from JSONL/CSV files, optionally with pseudo-labelled unlabelled texts.

Self-training: a trained classifier (the teacher) labels unlabelled texts, and those it is confident about join the
training split. The teacher runs as ``bilstm label`` (the batch job over the normal Predictor) in a child process:
``toolkit.data`` may not import ``toolkit.predict``, which reaches ``toolkit.nn`` (docs/architecture.md); a child
process keeps that rule and still runs the teacher through the one inference path there is.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.artifact import WEIGHTS_FILE, load_model_dir, read_meta
from toolkit.data.batching import pad_ids
from toolkit.data.datamodule import BucketedDataModule, carve_dev
from toolkit.data.export import DataExport, DataInfo
from toolkit.data.lm_text import read_lines
from toolkit.data.readers import Example, check_labels, file_sha256, read_labelled
from toolkit.data.tokenize import Tokenizer, TokenizerSettings
from toolkit.data.vocab import Vocab
from toolkit.errors import ConfigError, DataError, ModelDirError
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
        max_train_examples: use only N training examples after the split (quick experiments, smaller-data
            studies): a sample drawn with ``split_seed``, kept in file order, so a file sorted by label
            (IMDB's is) still gives every class.
        unlabelled_files: unlabelled texts for self-training: .txt (one text per line) or .jsonl (``text_field``),
            optionally .gz. Needs ``pseudo_label_model``.
        pseudo_label_model: a trained classifier's model directory (the teacher): it labels ``unlabelled_files``
            on the CPU (``bilstm label``, batches of ``eval_batch_size``, torch's thread setting) and the texts
            it is confident about join the training split, after the dev split is carved. The teacher never
            sees a dev or test text: an unlabelled text equal to one (whitespace normalised, and lower-cased
            when ``lowercase``) is dropped before labelling. The vocabulary stays that of the gold training
            text. Labelling happens at ``setup("fit")`` only (not for ``bilstm test``/``validate``).
        pseudo_label_threshold: keep a text only if the teacher's top probability is at least this, in (0, 1].
        pseudo_label_max: keep at most this many texts, the most confident first (ties: input order).
        pseudo_label_balance: keep as many texts of each of the teacher's labels (those of the rarest), so
            that the teacher's bias towards a class does not grow in the student.
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
        unlabelled_files: list[str] | None = None,
        pseudo_label_model: str | None = None,
        pseudo_label_threshold: float = 0.9,
        pseudo_label_max: int | None = None,
        pseudo_label_balance: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer_settings = TokenizerSettings(lang=lang, lowercase=lowercase, max_tokens=max_tokens,
                                                    truncate=truncate)
        self.unlabelled_files = [unlabelled_files] if isinstance(unlabelled_files, str) else list(unlabelled_files
                                                                                                   or [])
        check_pseudo_label_settings(self.unlabelled_files, pseudo_label_model, pseudo_label_threshold,
                                    pseudo_label_max)
        self._tokenizer: Tokenizer | None = None
        self.vocab: Vocab | None = None
        self.labels: list[str] = []
        self.datasets: dict[str, EncodedDataset] = {}
        self.held_out_texts: set[str] = set()
        """Dev and test texts (:func:`text_key` form): never given to the teacher, never pseudo-labelled."""
        self.pseudo_examples: list[Example] | None = None
        """The pseudo-labelled texts that joined the training split (``line``: their line in the unlabelled file)."""
        self.pseudo_record: dict[str, Any] = {}

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
        if hp.max_train_examples and hp.max_train_examples < len(train):
            generator = torch.Generator().manual_seed(hp.split_seed)
            train = [train[i] for i in sorted(torch.randperm(len(train), generator=generator)[
                : hp.max_train_examples].tolist())]
        self.labels = sorted({example.label for example in train})
        if len(self.labels) < 2:
            raise DataError(hp.train_file, f"has a single label {self.labels}; a classifier needs at least two")
        check_labels(dev, self.labels, hp.dev_file or hp.train_file)
        train_tokens = self._tokenise(train, "train")
        # From the gold training text only, pseudo-labelled texts or not: the vocabulary (and so the embedding table)
        # stays the baseline's, so a self-trained model differs from it by its training examples alone, and the
        # model's sizes (data_info) do not wait for the teacher.
        self.vocab = Vocab.build(train_tokens, hp.max_vocab, hp.min_freq)
        self.datasets["train"] = self._encode(train, train_tokens)
        self.datasets["val"] = self._encode(dev, self._tokenise(dev, "dev"))
        held_out = list(dev)
        if hp.test_file:
            test = read_labelled(hp.test_file, hp.text_field, hp.label_field)
            check_labels(test, self.labels, hp.test_file)
            self.datasets["test"] = self._encode(test, self._tokenise(test, "test"))
            held_out += test
        self.held_out_texts = {text_key(example.text, hp.lowercase) for example in held_out}
        log.info("vocabulary %d tokens, labels %s, train %d, dev %d",
                 len(self.vocab), self.labels, len(train), len(dev))

    def _tokenise(self, examples: list[Example], split: str) -> list[list[str]]:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.tokenizer_settings)
        texts = (example.text for example in examples)
        return self._tokenizer.tokenize_many(progress(texts, f"tokenising {split}", len(examples), "texts"))

    def _encode(self, examples: list[Example], tokens: list[list[str]]) -> EncodedDataset:
        label_index = {label: i for i, label in enumerate(self.labels)}
        # A text with no tokens (e.g. only markup) becomes one unknown token rather than a zero-length row.
        ids = [torch.tensor(self.vocab.encode(toks) or [Vocab.unk_index]) for toks in tokens]
        return EncodedDataset(ids, [label_index[example.label] for example in examples])

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage in (None, "fit"):
            self._pseudo_label()

    def _pseudo_label(self) -> None:
        """Let the teacher label the unlabelled texts (never a dev or test text); the confident ones join train."""
        hp = self.hparams
        if not hp.pseudo_label_model or self.pseudo_examples is not None:
            return
        self._prepare()
        teacher = load_model_dir(hp.pseudo_label_model)  # checksums: the sha256 recorded is of these weights
        teacher_labels = list(teacher.meta.labels or [])
        if not set(teacher_labels) <= set(self.labels):
            raise DataError(hp.pseudo_label_model, f"the teacher's labels {sorted(teacher_labels)} are not among "
                            f"the data's labels {self.labels}", hint="give a teacher trained on these labels")
        gold = self._gold_files()
        if teacher.meta.training.get("data", {}).get("sha256") not in (None, file_sha256(*gold)):
            log.warning("the teacher %s was trained on other files than %s: make sure it never saw this dev split",
                        hp.pseudo_label_model, [str(f) for f in gold])
        texts = [item for path in self.unlabelled_files for item in read_lines(path, hp.text_field)]  # (line, text)
        sent = [(line, text) for line, text in texts if text_key(text, hp.lowercase) not in self.held_out_texts]
        probabilities = label_with_teacher(hp.pseudo_label_model, [text for _, text in sent], hp.eval_batch_size)
        scored = [(index, max(row, key=row.__getitem__), max(row.values()))
                  for index, row in enumerate(probabilities) if row is not None]
        kept = select_confident(scored, hp.pseudo_label_threshold, hp.pseudo_label_max,
                                teacher_labels if hp.pseudo_label_balance else None)
        self.pseudo_examples = [Example(sent[index][1], label, sent[index][0]) for index, label in kept]
        counts = {label: sum(1 for _, kept_label in kept if kept_label == label) for label in teacher_labels}
        if not kept:
            log.warning("no unlabelled text was kept for training (threshold %s, %d texts labelled); lower "
                        "data.pseudo_label_threshold", hp.pseudo_label_threshold, len(scored))
        gold_train = self.datasets["train"]
        pseudo = self._encode(self.pseudo_examples, self._tokenise(self.pseudo_examples, "pseudo-labelled"))
        self.datasets["train"] = EncodedDataset(gold_train.ids + pseudo.ids, gold_train.labels + pseudo.labels)
        self.pseudo_record = {
            "model": str(Path(hp.pseudo_label_model)), "teacher_sha256": teacher.meta.files[WEIGHTS_FILE]["sha256"],
            "files": [str(Path(f)) for f in self.unlabelled_files], "sha256": file_sha256(*self.unlabelled_files),
            "threshold": hp.pseudo_label_threshold, "max": hp.pseudo_label_max, "balance": hp.pseudo_label_balance,
            "read": len(texts), "dropped_held_out": len(texts) - len(sent), "labelled": len(scored),
            "refused": len(sent) - len(scored),
            "confident": sum(1 for _, _, score in scored if score >= hp.pseudo_label_threshold),
            "kept": counts, "gold_train_examples": len(gold_train),
        }
        log.info("pseudo-labelled %d of %d unlabelled texts (%s) into the training split", len(kept), len(texts),
                 ", ".join(f"{label} {count}" for label, count in counts.items()))

    def _gold_files(self) -> list[str]:
        """The labelled files the model learns from and is selected on (train, and dev when given)."""
        return [self.hparams.train_file] + ([self.hparams.dev_file] if self.hparams.dev_file else [])

    @property
    def data_info(self) -> ClassifyDataInfo:
        """Sizes and labels the model is built from (linked into ``model.data_info`` by the CLI)."""
        self._prepare()
        return ClassifyDataInfo(len(self.vocab), tuple(self.labels))

    def export(self) -> DataExport:
        """What the model directory needs from the data side (the classify spec writes it)."""
        self._prepare()
        self._pseudo_label()
        files = self._gold_files()
        return DataExport(
            labels=list(self.labels),
            tokenizer=self.tokenizer_settings.to_dict(),
            json_files={"vocab.json": self.vocab.to_json()},
            record={"files": [str(Path(f)) for f in files], "sha256": file_sha256(*files),
                    "train_examples": len(self.datasets["train"]), "dev_examples": len(self.datasets["val"]),
                    **({"pseudo_labels": self.pseudo_record} if self.pseudo_record else {})},
        )

    def vocabulary_tokens(self) -> list[str]:
        """Vocabulary in index order (used to initialise pretrained embeddings)."""
        self._prepare()
        return self.vocab.tokens


# -- self-training -----------------------------------------------------------------------------------------------

TEACHER_CHUNK = 4096
"""Texts per ``bilstm label`` run: the unit of the progress count (each run costs ~2 s to start)."""


def check_pseudo_label_settings(unlabelled_files: list[str], model: str | None, threshold: float,
                                maximum: int | None) -> None:
    """Refuse inconsistent self-training settings before any data is read.

    Raises:
        ConfigError: one setting without the other, a threshold outside (0, 1], a maximum below 1, or a teacher
            directory that is missing, not a model directory, or not a text classifier.
    """
    if unlabelled_files and not model:
        raise ConfigError("data.unlabelled_files is set but data.pseudo_label_model is not: name the trained "
                          "classifier that labels them (e.g. runs/textcat_imdb/model), or drop unlabelled_files")
    if not model:
        return
    if not unlabelled_files:
        raise ConfigError(f"data.pseudo_label_model is {model!r} but data.unlabelled_files is not set: give the "
                          "unlabelled texts it should label")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold <= 1.0:
        raise ConfigError(f"data.pseudo_label_threshold must be in (0, 1], got {threshold!r}")
    if maximum is not None and (isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1):
        raise ConfigError(f"data.pseudo_label_max must be a whole number ≥ 1 (or null: no limit), got {maximum!r}")
    try:
        meta = read_meta(model)
    except ModelDirError as error:
        raise ConfigError(f"data.pseudo_label_model: {error}; give a classifier model directory written by "
                          "`bilstm fit` (run the teacher's config first)") from None
    if meta.task != "classify":
        raise ConfigError(f"data.pseudo_label_model: {model} holds a {meta.task!r} model, not a text classifier")


def text_key(text: str, lowercase: bool) -> str:
    """What makes two texts the same text to a classifier: whitespace normalised, lower-cased if it lower-cases."""
    key = " ".join(text.split())
    return key.lower() if lowercase else key


def select_confident(scored: Sequence[tuple[int, str, float]], threshold: float, maximum: int | None,
                     balance_labels: Sequence[str] | None) -> list[tuple[int, str]]:
    """The pseudo-labels to keep: deterministic, in input order.

    Args:
        scored: ``(index, label, top probability)`` of each labelled text.
        threshold: keep only scores ≥ ``threshold``.
        maximum: keep at most this many, the most confident first (ties: the lower index).
        balance_labels: when given, keep the same number of texts of each of these labels: as many as the rarest
            has (at most ``maximum // len(balance_labels)`` each), each label's most confident first.

    Returns:
        ``(index, label)`` pairs, by index.
    """
    ranked = sorted((item for item in scored if item[2] >= threshold), key=lambda item: (-item[2], item[0]))
    if balance_labels:
        by_label = {label: [item for item in ranked if item[1] == label] for label in balance_labels}
        quota = min(len(items) for items in by_label.values())
        if maximum is not None:
            quota = min(quota, maximum // len(balance_labels))
        ranked = [item for items in by_label.values() for item in items[:quota]]
    elif maximum is not None:
        ranked = ranked[:maximum]
    return sorted((index, label) for index, label, _ in ranked)


def label_with_teacher(model_dir: str | Path, texts: Sequence[str], batch_size: int = 256) -> list[dict | None]:
    """Each text's class probabilities (``{label: p}``) from a classifier model directory, in input order; None
    for a text the teacher refuses (see ``bilstm label``'s errors file).

    Runs ``bilstm label`` on the CPU with torch's current thread count, :data:`TEACHER_CHUNK` texts at a time, with
    a progress count of texts. Every text a teacher labels goes through this function.

    Raises:
        ConfigError: the labelling job failed with a user-facing error (its ``bilstm: error:`` line).
    """
    def labelled() -> Iterator[dict | None]:
        with tempfile.TemporaryDirectory(prefix="bilstm-pseudo-labels-") as folder:
            for start in range(0, len(texts), TEACHER_CHUNK):
                yield from _label_chunk(model_dir, texts[start : start + TEACHER_CHUNK], batch_size,
                                        Path(folder) / f"chunk{start // TEACHER_CHUNK}")

    return list(progress(labelled(), "pseudo-labelling", len(texts), "texts"))


def _label_chunk(model_dir: str | Path, texts: Sequence[str], batch_size: int, stem: Path) -> list[dict | None]:
    source, output = stem.with_suffix(".in.jsonl"), stem.with_suffix(".out.jsonl")
    source.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    package_root = str(Path(__file__).resolve().parents[2])  # where toolkit/ and pipelines/ are
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "toolkit.cli", "label", str(model_dir), str(source), str(output), "--device",
               "cpu", "--threads", str(torch.get_num_threads()), "--batch-size", str(batch_size), "--quiet"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("bilstm: error: ")]
        if errors and result.returncode == 2:
            raise ConfigError(f"data.pseudo_label_model: the teacher could not label the unlabelled texts: "
                              f"{errors[-1].removeprefix('bilstm: error: ')}")
        raise RuntimeError(f"`{' '.join(command)}` failed (status {result.returncode}):\n{result.stderr[-3000:]}")
    found = {}
    with open(output, encoding="utf-8") as records:
        for line in records:
            record = json.loads(line)
            found[record["line"]] = record["probabilities"]
    source.unlink()
    output.unlink()
    return [found.get(number) for number in range(1, len(texts) + 1)]
