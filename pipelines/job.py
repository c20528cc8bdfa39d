"""One labelling job's work, shared by the single-process driver (pipelines/label.py) and the data-parallel one
(pipelines/distributed.py): a window of input → output and errors-file bytes, the job's fingerprint, publishing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.checkpoint import Checkpoint, ResumeError, State, writing_output
from pipelines.sources import (
    Bad,
    DocStart,
    InputReader,
    Item,
    Sentence,
    Text,
    Window,
    check_looks_like,
    input_kind,
    reads_tokens,
)
from toolkit.artifact import fsync_directory
from toolkit.errors import DataError, InputError
from toolkit.version import __version__


@dataclass
class Chunk:
    """One window's output: bytes per output file and how many records/errors they hold."""

    data: bytes
    errors: bytes
    records: int
    bad: int


# Characters JSON leaves raw but many line splitters (Python's str.splitlines, JavaScript) treat as line breaks:
# escaped, so one record is always exactly one line however the file is read.
LINE_BREAKS_IN_STRINGS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _jsonl(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False).translate(LINE_BREAKS_IN_STRINGS) + "\n").encode("utf-8")


def _string_zone(predictor: Any) -> contextlib.AbstractContextManager:
    """A spaCy memory zone around tokenisation: strings interned for a window are freed after it.

    spaCy's tokenizer adds every new token string to its vocabulary for good, so a long job over texts with
    unique tokens (ids, numbers, URLs) grows without bound (spaCy #11596: +83 MiB per 100k short texts with
    two unique tokens each, measured here). Predictors that do not tokenise with spaCy get a no-op context.
    """
    tokenizer = getattr(predictor, "tokenizer", None)
    vocab = getattr(getattr(tokenizer, "_spacy_tokenizer", None), "vocab", None)
    zone = getattr(vocab, "memory_zone", None)
    return zone() if callable(zone) else contextlib.nullcontext()


@dataclass
class LabelJob:
    """What turns a window into output bytes: the predictor, the output format and the batch size."""

    predictor: Any
    kind: str
    """Input kind: ``txt``, ``jsonl`` or ``conll``."""
    conll_out: bool
    batch_size: int
    backend: str = "torch"
    """How the predictor was loaded (``Predictor.load``'s ``backend``): not visible on the predictor itself."""
    quantize: bool = False
    """``Predictor.load``'s ``quantize``: the int8 torch network, or ``model.int8.onnx``."""
    primed: bool = False
    """Whether a window ran outside the memory zone: its strings (one window's worth: bounded) stay, so
    spaCy's tokenizer cache keeps the common words; zoning every window re-tokenised them from scratch
    each time (about 40% slower here)."""

    @classmethod
    def create(cls, predictor: Any, input_path: str | Path, output: Path, batch_size: int, backend: str = "torch",
               quantize: bool = False, text_field: str = "text") -> LabelJob:
        """Check that the model, the input and the output format fit together.

        ``backend`` and ``quantize`` are what ``predictor`` was loaded with (they go into the fingerprint).
        """
        kind = input_kind(input_path)
        check_looks_like(input_path, kind, predictor.task, text_field)
        if kind == "conll" and not reads_tokens(predictor.task):
            raise DataError(input_path, "CoNLL input needs a tagger model (one that reads pre-tokenised sentences); "
                            f"{predictor.model_dir.path} is a {predictor.task!r} model, which reads raw texts")
        if output.suffix == ".conll" and kind != "conll":
            raise DataError(output, "CoNLL output needs CoNLL input (tokens to write the tags beside)",
                            hint="write .jsonl instead")
        if batch_size < 1:
            raise DataError(output, f"batch size must be at least 1, got {batch_size}")
        return cls(predictor, kind, output.suffix == ".conll", batch_size, backend, bool(quantize))

    def label(self, window: Window) -> Chunk:
        """Predict one window; records and errors come out in input order.

        Every text (or sentence) is first checked the way the Predictor would check it, so one unusable text
        (a lone surrogate, too long…) becomes an errors-file record and never fails the batch it would join.
        """
        data: list[bytes] = []
        errors: list[bytes] = []
        items = [self._screen(item) for item in window.items]
        if self.kind == "conll":
            results = iter(self._tag(items))
        else:
            results = iter(self._predict([item.text for item in items if isinstance(item, Text)]))
        for item in items:
            if isinstance(item, Bad):
                errors.append(_jsonl({"line": item.line, "reason": item.reason}))
                continue
            if isinstance(item, DocStart):  # conlleval expects a tag column on it too
                if self.conll_out:
                    data.append(f"{item.raw} O\n\n".encode())
                continue
            result = next(results)
            if isinstance(result, str):  # the predictor refused this one text
                errors.append(_jsonl({"line": item.line, "reason": result}))
            elif isinstance(item, Text):
                data.append(_jsonl({"line": item.line, "text": item.text, **result.to_dict()}))
            elif self.conll_out:
                lines = "".join(f"{line} {tag}\n" for line, tag in zip(item.lines, result.tags, strict=True))
                data.append((lines + "\n").encode("utf-8"))
            else:
                record = {"line": item.line, "tokens": item.tokens, "tags": result.tags}
                data.append(_jsonl({**record, "input_truncated": True} if result.truncated else record))
        docstarts = sum(isinstance(item, DocStart) for item in items) if self.conll_out else 0
        return Chunk(b"".join(data), b"".join(errors), len(data) - docstarts, len(errors))

    def _screen(self, item: Item) -> Item:
        """The item, or a :class:`Bad` one saying why the predictor would refuse it."""
        if isinstance(item, Text):
            problem = self.predictor.input_problem(item.text)
        elif isinstance(item, Sentence):
            problem = self.predictor.tokens_problem(item.tokens)
        else:
            return item
        return item if problem is None else Bad(item.line, f"text {problem}" if isinstance(item, Text) else problem)

    def _predict(self, texts: list[str]) -> Sequence[Any]:
        """Predictions for a window's texts; if the predictor refuses the batch, text by text (refusals as str)."""
        if not texts:
            return []
        zone = _string_zone(self.predictor) if self.primed else contextlib.nullcontext()
        self.primed = True
        with zone:
            try:
                return self.predictor.predict(texts, self.batch_size)
            except InputError:
                results: list[Any] = []
                for text in texts:
                    try:
                        results.extend(self.predictor.predict([text], self.batch_size))
                    except InputError as error:
                        results.append(str(error))
                return results

    def _tag(self, items: list[Item]) -> Sequence[Any]:
        """Tags of the window's sentences; each sentence's document is counted from the window's ``-DOCSTART-``
        lines (a tagger with document context reads its neighbours in it)."""
        sentences, documents, document = [], [], 0
        for item in items:
            if isinstance(item, DocStart):
                document += 1
            elif isinstance(item, Sentence):
                sentences.append(item.tokens)
                documents.append(document)
        return self.predictor.tag_tokens(sentences, self.batch_size, documents=documents) if sentences else []


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def fingerprint(job: LabelJob, reader: InputReader, **extra: Any) -> dict[str, Any]:
    """What a resumed job must share with the interrupted one for its output to be the same bytes.

    The single-process job and every rank of a data-parallel one (``extra``: ``processes``, ``rank``) build it
    here. ``model_sha256`` hashes meta.json's content, whose ``files`` holds the sha256 and size of every other
    file in the directory (weights, vocabularies, ``model.onnx``, ``model.int8.onnx``…) and which loading
    checked against the files (``toolkit.artifact.check_files``): it covers every byte of the model without
    hashing the weights again. The libraries that compute the numbers and the tokens are versioned too: an
    upgrade between a crash and its resumption could change them.
    """
    model = hashlib.sha256(json.dumps(job.predictor.meta.to_json(), sort_keys=True).encode()).hexdigest()
    libraries = {name: _version(name) for name in ("torch", "spacy", "onnxruntime")}  # onnxruntime: None if absent
    return {"model_sha256": model, "input_size": reader.path.stat().st_size, "input_kind": reader.kind,
            "text_field": reader.text_field if reader.kind == "jsonl" else None, "window": reader.window_size,
            "batch_size": job.batch_size, "conll_output": job.conll_out, "device": job.predictor.device.type,
            "backend": job.backend, "quantize": job.quantize,
            "max_chars": job.predictor.max_chars, "truncate": job.predictor.truncate,
            "max_line_bytes": reader.max_line_bytes, "toolkit": __version__, "libraries": libraries, **extra}


def publish(checkpoint: Checkpoint, output: Path, data: Path, errors: Path, errors_final: Path) -> None:
    """Give a complete job's files their final names, then drop the checkpoint; safe to redo after a crash."""
    state = checkpoint.state
    with writing_output(errors_final):
        if errors.exists():
            if state.lengths.get("errors", 0):
                os.replace(errors, errors_final)
            else:
                errors.unlink()
        if not state.errors:
            errors_final.unlink(missing_ok=True)  # a stale errors file from an earlier run would mislead
    if data.exists():
        with writing_output(output):
            os.replace(data, output)
    elif not output.exists():
        raise ResumeError(f"{checkpoint.progress}: the job finished but {data} is gone; add --restart")
    fsync_directory(output.parent)
    checkpoint.remove()


def progress_bar(enabled: bool | None, initial: int, description: str) -> Any:
    """tqdm on stderr counting texts (rate in texts/s); off when stderr is not a terminal unless forced."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(disable=not enabled, initial=initial, unit=" texts", desc=description, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.05)


def summary(output: Path, state: State, errors_final: Path, resumed_at: int | None, done: int,
            seconds: float) -> dict[str, Any]:
    """The job's result as one JSON-able dict (the CLI prints it on stderr)."""
    return {"output": str(output), "records": state.records, "errors": state.errors,
            "errors_file": str(errors_final) if state.errors else None, "resumed_at_line": resumed_at,
            "seconds": round(seconds, 3), "texts_per_second": round(done / seconds, 1) if seconds > 0 else None}
