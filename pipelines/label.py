"""Batch labelling: a model directory + an input file → JSONL (or CoNLL) predictions, resumable after a crash.

    label_file("runs/textcat_imdb/model", "texts.txt", "labels.jsonl")

The input is streamed window by window (``window`` lines; memory stays flat however long the file is); the
Predictor length-sorts each window into batches; results are written in input order. Each window is
committed (``pipelines.checkpoint``): a killed job run again with the same arguments goes on from the last
commit and ends with the same bytes as an uninterrupted run. Lines that cannot be labelled (undecodable,
invalid JSON, no text) go to ``OUTPUT.errors.jsonl`` as ``{"line", "reason"}`` and the job goes on.
With ``devices``/``num_nodes`` above 1 the same windows are labelled data-parallel through Lightning
(``pipelines.distributed``) and merged back into the same output. Design and figures: docs/batch.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.checkpoint import Checkpoint, ResumeError, State, fsync_dir
from pipelines.outputs import check_output, output_paths
from pipelines.sources import MAX_LINE_BYTES, Bad, DocStart, InputReader, Item, Sentence, Text, Window, input_kind
from toolkit import __version__
from toolkit.errors import DataError, InputError
from toolkit.native_memory import release_large_allocations
from toolkit.predict import Predictor

WINDOW = 4096  # lines (sentences for CoNLL) read, length-sorted, predicted and committed together


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
    primed: bool = False
    """Whether a window ran outside the memory zone: its strings (one window's worth: bounded) stay, so
    spaCy's tokenizer cache keeps the common words; zoning every window re-tokenised them from scratch
    each time (about 40% slower here)."""

    @classmethod
    def create(cls, predictor: Any, input_path: str | Path, output: Path, batch_size: int) -> LabelJob:
        """Check that the model, the input and the output format fit together."""
        kind = input_kind(input_path)
        if kind == "conll" and predictor.task != "tag":
            raise DataError(input_path, f"CoNLL input needs a tagger model; {predictor.model_dir.path} is a "
                            f"{predictor.task!r} model")
        if output.suffix == ".conll" and kind != "conll":
            raise DataError(output, "CoNLL output needs CoNLL input (tokens to write the tags beside)",
                            hint="write .jsonl instead")
        if batch_size < 1:
            raise DataError(output, f"batch size must be at least 1, got {batch_size}")
        return cls(predictor, kind, output.suffix == ".conll", batch_size)

    def label(self, window: Window) -> Chunk:
        """Predict one window; records and errors come out in input order.

        Every text (or sentence) is first checked the way the Predictor would check it, so one unusable text
        (a lone surrogate, too long…) becomes an errors-file record and never fails the batch it would join.
        """
        data: list[bytes] = []
        errors: list[bytes] = []
        items = [self._screen(item) for item in window.items]
        if self.kind == "conll":
            results = iter(self._tag([item for item in items if isinstance(item, Sentence)]))
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

    def _tag(self, sentences: list[Sentence]) -> Sequence[Any]:
        return self.predictor.tag_tokens([s.tokens for s in sentences], self.batch_size) if sentences else []


def fingerprint(job: LabelJob, reader: InputReader, **extra: Any) -> dict[str, Any]:
    """What a resumed job must share with the interrupted one for its output to be the same bytes."""
    model = hashlib.sha256(json.dumps(job.predictor.meta, sort_keys=True).encode()).hexdigest()
    return {"model_sha256": model, "input_size": reader.path.stat().st_size, "input_kind": reader.kind,
            "text_field": reader.text_field if reader.kind == "jsonl" else None, "window": reader.window_size,
            "batch_size": job.batch_size, "conll_output": job.conll_out, "device": job.predictor.device.type,
            "max_chars": job.predictor.max_chars, "truncate": job.predictor.truncate,
            "max_line_bytes": reader.max_line_bytes, "toolkit": __version__, **extra}


def publish(checkpoint: Checkpoint, output: Path, data: Path, errors: Path, errors_final: Path) -> None:
    """Give a complete job's files their final names, then drop the checkpoint; safe to redo after a crash."""
    state = checkpoint.state
    if errors.exists():
        if state.lengths.get("errors", 0):
            os.replace(errors, errors_final)
        else:
            errors.unlink()
    if not state.errors:
        errors_final.unlink(missing_ok=True)  # a stale errors file from an earlier run would mislead
    if data.exists():
        os.replace(data, output)
    elif not output.exists():
        raise ResumeError(f"{checkpoint.progress}: the job finished but {data} is gone; add --restart")
    fsync_dir(output.parent)
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


def label_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path, text_field: str = "text",
               batch_size: int = 64, *, window: int = WINDOW, restart: bool = False, progress: bool | None = None,
               device: str | None = None, num_threads: int | None = None, devices: int = 1,
               accelerator: str = "auto", strategy: str = "auto", num_nodes: int = 1, max_chars: int | None = None,
               truncate: bool = False) -> dict[str, Any] | None:
    """Label every text (or CoNLL sentence) of ``input_path`` into ``output_path``, resumably and atomically.

    Args:
        model_dir: a model directory (``bilstm fit`` / ``toolkit.artifact``).
        input_path: .txt (one text per line), .jsonl (``text_field``) or CoNLL (taggers); ``.gz`` too.
        output_path: JSONL, or ``.conll`` (a tagger on CoNLL input: each token line + its predicted tag).
        text_field: the text field of .jsonl input.
        batch_size: texts per forward pass.
        window: lines (CoNLL: sentences) per window: the unit of length sorting, memory and commit.
        restart: ignore (and overwrite) an interrupted job's checkpoint instead of resuming it.
        progress: show a progress bar on stderr (None: when stderr is a terminal).
        device: ``cpu``/``cuda``/``cuda:1``… for the single-process job (default: CUDA when available).
        num_threads: torch intra-op threads (None leaves torch's setting).
        devices, accelerator, strategy, num_nodes: above one device or node, run data-parallel with a
            Lightning Trainer (see :func:`pipelines.distributed.label_distributed`). Lightning starts the
            other processes by running the same command again, so call this from a script's entry point.
        max_chars: longest text the model takes (``Predictor.load``'s default if None); longer texts go to the
            errors file, unless ``truncate``. A classifier that reads only its first/last N tokens measures a
            text after dropping what it never reads, so long reviews are never refused.
        truncate: cut texts over ``max_chars`` instead (their records say ``"input_truncated": true``).

    Raises:
        DataError: before any work, for an output that is the input (also through a link), a directory, in a
            missing or read-only folder, or with an extension other than .jsonl/.ndjson/.conll.

    Returns:
        ``{"output", "records", "errors", "errors_file", "resumed_at_line", "seconds", "texts_per_second"}``;
        None in the non-zero ranks of a data-parallel job.
    """
    output, source = Path(output_path), Path(input_path)
    release_large_allocations()  # a long job over texts of every length: freed batches go back to the system
    input_kind(source)
    if not source.is_file():
        raise DataError(source, "file not found" if not source.exists() else "not a regular file")
    check_output(source, output)
    predictor = Predictor.load(model_dir, device="cpu" if devices > 1 or num_nodes > 1 else device,
                               num_threads=num_threads, max_chars=max_chars, truncate=truncate)
    # A line may hold a text of max_chars characters, each up to 12 bytes as JSON (a \uXXXX\uXXXX pair).
    reader = InputReader(source, text_field, window, max(MAX_LINE_BYTES, 12 * predictor.max_chars))
    job = LabelJob.create(predictor, source, output, batch_size)
    if devices > 1 or num_nodes > 1:
        from pipelines.distributed import label_distributed

        return label_distributed(job, reader, output, restart=restart, progress=progress, devices=devices,
                                 accelerator=accelerator, strategy=strategy, num_nodes=num_nodes)
    paths = output_paths(output)
    checkpoint = Checkpoint(paths["progress"], {"data": paths["data"], "errors": paths["errors"]},
                            fingerprint(job, reader, processes=1))
    state = checkpoint.open(restart)
    resumed_at = state.next.line + 1 if state.next.offset else None
    if resumed_at is not None and not state.complete:
        print(f"bilstm label: resuming {output} at input line {resumed_at} ({state.records} records already "
              "written)", file=sys.stderr)
    started, done = time.perf_counter(), 0
    if not state.complete:
        with progress_bar(progress, state.records + state.errors, "label") as bar:
            for chunk_window in reader.windows(state.next, checkpoint.check_input):
                chunk = job.label(chunk_window)
                checkpoint.commit({"data": chunk.data, "errors": chunk.errors}, chunk_window.end,
                                  chunk_window.digest, chunk.records, chunk.bad)
                done += chunk.records + chunk.bad
                bar.update(chunk.records + chunk.bad)
        checkpoint.mark_complete()
    publish(checkpoint, output, paths["data"], paths["errors"], paths["errors_final"])
    return summary(output, state, paths["errors_final"], resumed_at, done, time.perf_counter() - started)
