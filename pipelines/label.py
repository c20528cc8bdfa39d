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

import sys
import time
from pathlib import Path
from typing import Any

from pipelines.checkpoint import Checkpoint
from pipelines.job import LabelJob, fingerprint, progress_bar, publish, summary
from pipelines.outputs import check_output, output_paths
from pipelines.sources import MAX_LINE_BYTES, InputReader, input_kind
from toolkit.errors import ConfigError, DataError
from toolkit.native_memory import release_large_allocations
from toolkit.predict import Predictor

WINDOW = 4096  # lines (sentences for CoNLL) read, length-sorted, predicted and committed together


def label_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path, text_field: str = "text",
               batch_size: int = 64, *, window: int = WINDOW, restart: bool = False, progress: bool | None = None,
               device: str | None = None, num_threads: int | None = None, devices: int = 1,
               accelerator: str = "auto", strategy: str = "auto", num_nodes: int = 1, max_chars: int | None = None,
               truncate: bool = False, backend: str = "torch", quantize: bool = False) -> dict[str, Any] | None:
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
        backend: ``"torch"`` or ``"onnx"`` (the directory's ``model.onnx``; single process, CPU).
        quantize: int8: the dynamic-quantized torch network on the CPU, or ``model.int8.onnx`` (single process).

    Raises:
        DataError: before any work, for an output that is the input (also through a link), a directory, in a
            missing or read-only folder, or with an extension other than .jsonl/.ndjson/.conll; for an input
            whose first lines are plainly another format than its name says (JSONL in a .txt file…).
        ResumeError: an interrupted job on ``output_path`` was run with other settings (its fingerprint:
            model, input, options, backend, quantization, device type…); the message names what changed.
        OutputError: the output cannot be written any more (disk full, read-only…); the same call, once that
            is fixed, resumes from the last commit.

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
    parallel = devices > 1 or num_nodes > 1
    if parallel and (backend == "onnx" or quantize):
        flag = "--backend onnx" if backend == "onnx" else "--quantize"
        raise ConfigError(f"{flag} labels in one process (on the CPU, with its threads): drop --devices/--num-nodes, "
                          "or label data-parallel with the float torch network")
    predictor = Predictor.load(model_dir, device="cpu" if parallel else device, num_threads=num_threads,
                               quantize=quantize, max_chars=max_chars, truncate=truncate, backend=backend)
    # A line may hold a text of max_chars characters, each up to 12 bytes as JSON (a \uXXXX\uXXXX pair).
    reader = InputReader(source, text_field, window, max(MAX_LINE_BYTES, 12 * predictor.max_chars),
                         whole_documents=bool(getattr(predictor, "context_tokens", 0)))
    job = LabelJob.create(predictor, source, output, batch_size, backend=backend, quantize=quantize,
                          text_field=text_field)
    if parallel:
        from pipelines.distributed import label_distributed

        return label_distributed(job, reader, output, restart=restart, progress=progress, devices=devices,
                                 accelerator=accelerator, strategy=strategy, num_nodes=num_nodes)
    paths = output_paths(output)
    checkpoint = Checkpoint(paths["progress"], {"data": paths["data"], "errors": paths["errors"]},
                            fingerprint(job, reader, processes=1))
    try:
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
    except BaseException:
        checkpoint.release()  # the lock too: the same call in this process may resume at once
        raise
    return summary(output, state, paths["errors_final"], resumed_at, done, time.perf_counter() - started)
