"""The files command, ``bilstm label MODEL_DIR INPUT... OUTPUT --engine ray``: one output file per input file.

    from pipelines.ray_files import label_files

    label_files("runs/textcat_imdb/model", ["s3://corpus/reviews/"], "s3://corpus/labels/", num_actors=4)

The driver lists the inputs (:mod:`pipelines.ray_sources`), checks the output location and the manifest, and runs
one Ray Data pipeline over the files still to do: read tasks stream each file's rows, the actor pool of
:func:`pipelines.ray_label.label_dataset` labels them, and this process writes each file as its rows arrive (in
input order) and commits it whole, atomically, at its end-of-file marker (:class:`OutputDir`). A rerun skips the
inputs whose output exists, so a killed job run again ends with the files of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from pipelines.job import LINE_BREAKS_IN_STRINGS
from pipelines.ray_label import label_dataset, prediction_fields
from pipelines.ray_sources import InputFile, Storage, check_output_location, is_remote, list_inputs, read_rows
from pipelines.sources import MAX_LINE_BYTES, reads_tokens
from toolkit.errors import ConfigError, DataError

MANIFEST = "manifest.json"
READERS = 2
"""Read tasks at once; reading and parsing is cheap next to the model, so a couple keep the actors fed."""


def model_sha256(model_dir: str | Path) -> str:
    """The single-file job's ``model_sha256``: the SHA-256 of meta.json's content, which lists every file's."""
    from toolkit.artifact import read_meta

    return hashlib.sha256(json.dumps(read_meta(model_dir).to_json(), sort_keys=True).encode()).hexdigest()


class OutputDir:
    """OUTPUT: a local directory or an ``s3://`` prefix, where each file appears whole or not at all.

    Locally a file is written to a temporary name beside it (``.NAME.tmp-XXXXXXXX``, the toolkit's atomic
    writer's), flushed to disk, renamed into place and the folder flushed; a killed job's temporaries are
    deleted by the next run. On S3 it is staged in a local temporary file and uploaded once complete: an object
    appears only when its upload completes, so a killed upload leaves nothing. Only the driver writes here.
    """

    def __init__(self, uri: str, storage: Storage) -> None:
        self.uri = uri.rstrip("/") if is_remote(uri) else os.path.abspath(uri)
        self.remote = is_remote(uri)
        self.fs, self.path = storage.filesystem(self.uri)
        self._lock: Any = None

    def _full(self, name: str) -> str:
        return f"{self.path}/{name}"

    def open(self) -> None:
        """Create the directory and (locally) take its lock: a second job on it is refused while one runs."""
        if self.remote:
            return
        import fcntl

        from pipelines.checkpoint import ResumeError, writing_output

        with writing_output(Path(self.path)):
            os.makedirs(self.path, exist_ok=True)
            self._lock = open(self._full(".lock"), "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()
            raise ResumeError(f"{self.uri}: another job is writing this output; wait for it or stop it") from None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def existing(self) -> set[str]:
        """Names (relative paths) of the files already in OUTPUT: one listing, not a request per file."""
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self.path, recursive=True, allow_not_found=True))
        return {os.path.relpath(i.path, self.path) for i in infos if i.type == fs.FileType.File}

    def read_text(self, name: str) -> str | None:
        from pyarrow import fs

        if self.fs.get_file_info(self._full(name)).type != fs.FileType.File:
            return None
        with self.fs.open_input_stream(self._full(name)) as stream:
            return stream.read().decode("utf-8")

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.delete_file(self._full(name))

    def remove_torn(self, name: str) -> None:
        """Delete temporaries a killed job left for ``name`` (only while this job holds the lock)."""
        if not self.remote:
            from toolkit.artifact import remove_torn_writes

            remove_torn_writes(Path(self._full(name)))

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[Any]:
        """A binary stream whose bytes become ``name`` when the block ends without an exception (else nothing)."""
        from pipelines.checkpoint import writing_output
        from toolkit.artifact import fsync_directory

        final = Path(self._full(name)) if not self.remote else Path(tempfile.gettempdir()) / PurePosixPath(name).name
        folder = final.parent
        with writing_output(final):
            folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=folder if not self.remote else None, prefix=f".{final.name}.tmp-")
        try:
            with writing_output(final), os.fdopen(handle, "wb") as stream:
                yield stream
                stream.flush()
                os.fsync(stream.fileno())
            if self.remote:
                with open(temporary, "rb") as source, self.fs.open_output_stream(self._full(name)) as target:
                    shutil.copyfileobj(source, target, 1 << 20)
            else:
                with writing_output(final):
                    os.chmod(temporary, 0o644)
                    os.replace(temporary, final)
                fsync_directory(folder)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.writing(name) as stream:
            stream.write(data)


class _FileOutput:
    """One input file's output (and errors output), written as its rows arrive; committed whole in :meth:`finish`."""

    def __init__(self, out: OutputDir, item: InputFile, output_format: str, fields: list[pa.Field]) -> None:
        self.out, self.item, self.format = out, item, output_format
        self.stack = contextlib.ExitStack()
        self.stream = self.stack.enter_context(out.writing(f"{item.name}.{output_format}"))
        self.file = json.dumps(item.uri, ensure_ascii=False).translate(LINE_BREAKS_IN_STRINGS)
        self.errors: list[bytes] = []
        self.rows, self.records, self.last_line, self.buffer = 0, 0, -1, []
        if output_format == "parquet":
            import pyarrow.parquet as pq

            first = [pa.field("text", pa.string())] if item.kind != "conll" else []
            self.schema = pa.schema([pa.field("file", pa.string()), pa.field("line", pa.int64()), *first, *fields])
            self.writer = pq.ParquetWriter(self.stream, self.schema)

    def add(self, row: dict[str, Any]) -> None:
        if row["line"] <= self.last_line and row["line"]:  # line 0: a whole-file problem, before any line
            raise RuntimeError(f"{self.item.uri}: rows came back out of order (line {row['line']} after "
                               f"{self.last_line}); nothing of this file was committed, run the same command again")
        self.last_line, self.rows = row["line"], self.rows + 1
        if row["error"] is not None:
            self.errors.append((json.dumps({"file": self.item.uri, "line": row["line"], "reason": row["error"]},
                                           ensure_ascii=False).translate(LINE_BREAKS_IN_STRINGS) + "\n").encode())
            return
        self.records += 1
        if self.format == "jsonl":
            self.stream.write(f'{{"file": {self.file}, {row["record"][1:]}\n'.encode())
            return
        self.buffer.append({**row, "file": self.item.uri})  # the input's path in place of its index
        if len(self.buffer) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def finish(self, rows_in_file: int) -> None:
        """Commit: the errors output (or remove a stale one), then the output itself, each atomically."""
        if rows_in_file != self.rows:
            raise RuntimeError(f"{self.item.uri}: {self.rows} rows came back of {rows_in_file} read; nothing of this "
                               "file was committed, run the same command again")
        if self.format == "parquet":
            self._flush()
            self.writer.close()
        errors_name = f"{self.item.name}.errors.jsonl"
        if self.errors:
            self.out.write_bytes(errors_name, b"".join(self.errors))
        else:
            self.out.remove(errors_name)
        self.stack.close()

    def abort(self, error: BaseException) -> None:
        self.stack.__exit__(type(error), error, error.__traceback__)  # the temporary file is deleted


def _settings(**options: Any) -> dict[str, Any]:
    from importlib import metadata

    from toolkit.version import __version__

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {**options, "toolkit": __version__, "libraries": {n: version(n) for n in ("torch", "spacy", "onnxruntime",
                                                                                  "ray")}}


def _check_manifest(out: Any, manifest: dict[str, Any], restart: bool) -> None:
    """Refuse to add to an OUTPUT labelled with another model or settings; write the manifest (atomically)."""
    from pipelines.checkpoint import ResumeError

    text = out.read_text(MANIFEST)
    if text is not None and not restart:
        old = json.loads(text)
        flat_old, flat_new = {"model_sha256": old.get("model_sha256"), **old.get("settings", {})}, {
            "model_sha256": manifest["model_sha256"], **manifest["settings"]}
        changed = sorted(key for key in set(flat_old) | set(flat_new) if flat_old.get(key) != flat_new.get(key))
        if changed or old.get("format") != manifest["format"]:
            names = ", ".join(f"{key}: {flat_old.get(key)!r} → {flat_new.get(key)!r}" for key in changed)
            raise ResumeError(f"{out.uri}: labelled earlier with another model or settings ({names or 'format'}); "
                              "run the same command to go on, give another OUTPUT, or add --restart to relabel "
                              "every file")
        return
    out.write_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def label_files(model_dir: str | Path, inputs: list[str], output: str, *, text_field: str = "text",
                output_format: str = "jsonl", batch_size: int = 64, window: int = 1024, num_actors: int | None = None,
                threads_per_actor: int = 1, num_gpus: float = 0, backend: str = "torch", quantize: bool = False,
                max_chars: int | None = None, truncate: bool = False, restart: bool = False,
                ray_address: str | None = None, storage: Any = None, progress: bool | None = None) -> dict[str, Any]:
    """Label every file of ``inputs`` (files, directories, globs; local or ``s3://``) into ``output``, one output
    file per input file (``NAME.jsonl`` or ``NAME.parquet``, bad records in ``NAME.errors.jsonl``).

    Each output appears only once complete; a rerun skips the inputs whose output exists, so a killed job run
    again ends with the files of an uninterrupted run. ``output/manifest.json`` holds the model's SHA-256 and the
    settings; a rerun with others is refused naming them (``restart``: relabel every file). ``ray_address``:
    None starts a local Ray instance; ``auto`` or ``HOST:PORT`` joins a cluster. ``num_actors`` None: the
    cluster's CPUs over ``threads_per_actor``, less one CPU for reading (at least 1).

    Raises:
        DataError: before any work, for an input that is missing or of a kind that cannot be labelled, CoNLL input
            for a model that reads only texts, two inputs that map to one output name, an OUTPUT that is or is
            inside an INPUT directory (or holds an input, or is a file).
        ResumeError: OUTPUT was labelled with another model or settings.

    Returns:
        ``{"output", "files", "skipped", "records", "errors", "seconds", "texts_per_second"}``.
    """
    import time

    from toolkit.artifact import read_meta
    from toolkit.predict.base import DEFAULT_MAX_CHARS

    if output_format not in ("jsonl", "parquet"):
        raise ConfigError(f"output format must be jsonl or parquet, not {output_format!r}")
    storage = storage or Storage.from_env()
    files, roots = list_inputs(inputs, storage)
    check_output_location(output, files, roots)
    task = read_meta(model_dir).task
    conll = [item.uri for item in files if item.kind == "conll"]
    if conll and not reads_tokens(task):
        raise DataError(conll[0], f"CoNLL input needs a tagger model (one that reads pre-tokenised sentences); "
                        f"{model_dir} is a {task!r} model, which reads raw texts")
    limit = max_chars or DEFAULT_MAX_CHARS
    manifest = {"format": 1, "model_sha256": model_sha256(model_dir), "settings": _settings(
        text_field=text_field, output_format=output_format, batch_size=batch_size, window=window, max_chars=limit,
        truncate=truncate, backend=backend, quantize=quantize, device="cuda" if num_gpus else "cpu")}
    out = OutputDir(output, storage)
    out.open()
    try:
        _check_manifest(out, manifest, restart)
        done = out.existing()
        pending = [i for i, item in enumerate(files) if restart or f"{item.name}.{output_format}" not in done]
        if len(pending) < len(files):
            print(f"bilstm label: {len(files) - len(pending)} of {len(files)} files already labelled in {output}; "
                  "labelling the others", file=sys.stderr)
        started = time.perf_counter()
        counts = {"records": 0, "errors": 0}
        if pending:
            for index in pending:
                out.remove_torn(f"{files[index].name}.{output_format}")
            counts = _run(model_dir, files, pending, out, storage, task, output_format, ray_address, progress,
                          text_field=text_field, max_line_bytes=max(MAX_LINE_BYTES, 12 * limit),
                          batch_size=batch_size, window=window, num_actors=num_actors,
                          threads_per_actor=threads_per_actor, num_gpus=num_gpus, backend=backend, quantize=quantize,
                          max_chars=max_chars, truncate=truncate)
    finally:
        out.close()
    seconds = time.perf_counter() - started
    total = counts["records"] + counts["errors"]
    return {"output": output, "files": len(pending), "skipped": len(files) - len(pending), **counts,
            "seconds": round(seconds, 3), "texts_per_second": round(total / seconds, 1) if pending else None}


def _read_files(batch: pa.Table, storage: Any, text_field: str, task: str, max_line_bytes: int) -> Any:
    """``map_batches`` function of the read stage: one row per input file in, that file's rows out (streamed)."""
    for row in batch.to_pylist():
        item = InputFile(row["uri"], row["kind"], row["name"])
        yield from read_rows(row["file_index"], item, storage, text_field, task, max_line_bytes)


def _run(model_dir: Any, files: list[Any], pending: list[int], out: Any, storage: Any, task: str, output_format: str,
         ray_address: str | None, progress: bool | None, *, text_field: str, max_line_bytes: int,
         num_actors: int | None, threads_per_actor: int, **options: Any) -> dict[str, int]:
    """The Ray pipeline (read tasks → actor pool → this process) and each file's commit, in input order."""
    import logging

    import ray

    started = not ray.is_initialized()
    if started:
        private = ray_address is None and "RAY_ADDRESS" not in os.environ
        local = {"_node_ip_address": "127.0.0.1"} if private else {}  # a private instance: loopback only
        ray.init(address=ray_address, **local, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars
    # files come back whole and in input order, so each is written as it streams in and committed at its end row
    context.execution_options.preserve_order = True
    context.enable_progress_bars = sys.stderr.isatty() if progress is None else progress
    current: _FileOutput | None = None
    counts = {"records": 0, "errors": 0}
    try:
        if num_actors is None:
            num_actors = max(1, int(ray.cluster_resources().get("CPU", 1) - 1) // threads_per_actor)
        local = [files[i].uri for i in pending if not files[i].uri.startswith("s3://")]
        # local paths are the driver's: read them on its node
        where = {"label_selector": {"ray.io/node-id": ray.get_runtime_context().get_node_id()}} if local else {}
        listing = ray.data.from_items([{"file_index": i, "uri": files[i].uri, "kind": files[i].kind,
                                        "name": files[i].name} for i in pending], override_num_blocks=len(pending))
        rows = listing.map_batches(_read_files, batch_size=1, batch_format="pyarrow", num_cpus=0,
                                   compute=ray.data.TaskPoolStrategy(size=min(READERS, len(pending))), **where,
                                   fn_kwargs={"storage": storage, "text_field": text_field, "task": task,
                                              "max_line_bytes": max_line_bytes})
        tokens = "sentence" if reads_tokens(task) else None
        labelled = label_dataset(rows, model_dir, text_column="text", tokens_column=tokens,
                                 document_column="document", num_actors=num_actors,
                                 threads_per_actor=threads_per_actor,
                                 output="json" if output_format == "jsonl" else "columns", **options)
        fields = prediction_fields(task)
        order = iter(pending)
        for block in labelled.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in block.to_pylist():
                if current is None:
                    expected = next(order)
                    if row["file_index"] != expected:
                        raise RuntimeError(f"rows of {files[row['file_index']].uri} came before those of "
                                           f"{files[expected].uri}; nothing was committed for either")
                    item = files[expected]
                    current = _FileOutput(out, item, output_format,
                                          prediction_fields(task, tokens=True) if item.kind == "conll" else fields)
                if row["rows_in_file"] is not None:
                    current.finish(row["rows_in_file"])
                    counts["records"] += current.records
                    counts["errors"] += len(current.errors)
                    current = None
                else:
                    current.add(row)
    except BaseException as error:
        if current is not None:
            current.abort(error)
        if isinstance(error, ray.exceptions.RayActorError) and "creation task" in str(error):
            from toolkit.errors import ModelDirError

            reason = str(error).strip().splitlines()[-1]  # the actor's own exception, e.g. a ModelDirError line
            raise ModelDirError(f"the model actors could not start: {reason}") from None
        raise
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started:
            ray.shutdown()
    return counts
