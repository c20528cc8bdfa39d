"""Where a Ray labelling job's inputs are: local or ``s3://`` paths listed and read into rows.

Object storage goes through pyarrow's :class:`~pyarrow.fs.S3FileSystem`, configured by :class:`Storage` from the
standard settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``) read when a job starts, never at import; nothing here opens a connection before then.

Reading reuses the single-file job's rules (:class:`pipelines.sources.InputReader`: undecodable lines, invalid
JSON, a missing text field, CoNLL sentences), so a file gives the same records and the same bad lines as under
``bilstm label``. A remote text file is first copied to a local temporary file (the reader seeks and hashes
local bytes); a Parquet file is read from where it is, one row group at a time. The outputs are written by
:class:`pipelines.ray_files.OutputDir`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from pipelines.sources import Bad, DocStart, InputReader, Sentence, Text, check_looks_like
from toolkit.data.readers import JSONL_SUFFIXES, data_format
from toolkit.data.textrules import SURROGATE, text_problem
from toolkit.errors import DataError

KINDS = ("txt", "jsonl", "conll", "parquet")
LISTED_SUFFIXES = {".txt", ".text", ".jsonl", ".ndjson", ".conll", ".iob", ".bio", ".bioes", ".parquet"}
"""What a directory or glob lists (with ``.gz`` for all but Parquet); an explicit file may be any input kind."""
NAME_SUFFIXES = LISTED_SUFFIXES | JSONL_SUFFIXES
"""Suffixes dropped from an input's name to name its output (``a.jsonl.gz`` → ``a.jsonl``/``a.parquet``)."""
ROWS = pa.schema([("file_index", pa.int64()), ("line", pa.int64()), ("text", pa.string()),
                  ("sentence", pa.list_(pa.string())), ("document", pa.int64()), ("error", pa.string()),
                  ("rows_in_file", pa.int64())])
"""The rows a file is read into. ``file_index``: the file's place in the job's list; ``line``: 1-based line
(Parquet: row) number; ``text`` or ``sentence`` (CoNLL tokens) is set, or ``error`` says why the line cannot be
labelled; each file ends with one marker row whose ``rows_in_file`` counts the rows before it (its ``error`` is
set, so labelling passes it through)."""
END_OF_FILE = "end of file"
CHUNK_ROWS = 1024


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://")


@dataclass(frozen=True)
class Storage:
    """How ``s3://`` paths are reached; None fields leave the AWS SDK's own default (its config files, roles).

    Build it with :meth:`from_env` when a job starts. It travels to the Ray tasks that read remote files, as a
    filesystem object passed to Ray's own readers would; the secrets are kept out of its ``repr``.
    """

    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, endpoint: str | None = None, region: str | None = None) -> Storage:
        """The standard AWS settings from the environment; ``endpoint``/``region`` (CLI options) win."""
        env = os.environ.get
        return cls(endpoint or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
                   region or env("AWS_REGION") or env("AWS_DEFAULT_REGION"), env("AWS_ACCESS_KEY_ID"),
                   env("AWS_SECRET_ACCESS_KEY"), env("AWS_SESSION_TOKEN"))

    def filesystem(self, uri: str) -> tuple[Any, str]:
        """``(pyarrow filesystem, path in it)``: S3 (``bucket/key``) for ``s3://``, else the local one."""
        from pyarrow import fs

        if not is_remote(uri):
            return fs.LocalFileSystem(), str(Path(uri).absolute())
        options: dict[str, Any] = {"access_key": self.access_key, "secret_key": self.secret_key,
                                   "session_token": self.session_token, "region": self.region}
        if self.endpoint:
            scheme, _, rest = self.endpoint.rpartition("://")
            options.update(endpoint_override=rest, scheme=scheme or "https")
        return fs.S3FileSystem(**{k: v for k, v in options.items() if v is not None}), uri[len("s3://"):].rstrip("/")


@dataclass(frozen=True)
class InputFile:
    """One file to label: where it is (its records' ``file``), its kind and its name under OUTPUT."""

    uri: str
    kind: str
    name: str
    """Path of its output under OUTPUT without the extension: the input's path below the directory or glob it
    was found by (a file given by name: its name), the input's own suffixes dropped."""


@dataclass(frozen=True)
class Root:
    """A directory (or the fixed part of a glob) the inputs were listed from; OUTPUT may not be inside it."""

    uri: str
    recursive: bool


def file_kind(name: str, listed: bool) -> str | None:
    """``txt``/``jsonl``/``conll``/``parquet`` from a file name; None for a name a listing skips.

    Raises:
        DataError: a file given by name whose kind cannot be labelled (``.csv``…).
    """
    base = PurePosixPath(name).name
    suffixes = [s.lower() for s in PurePosixPath(base).suffixes]
    if listed and (base.startswith((".", "_")) or not suffixes):
        return None  # hidden files, _SUCCESS markers, READMEs
    if suffixes and suffixes[-1] == ".parquet":
        return "parquet"
    try:
        kind: str | None = data_format(base)
    except DataError:
        kind = None
    if listed:
        body = suffixes[:-1] if suffixes[-1] == ".gz" else suffixes
        explicit = bool(body) and (body[-1] in LISTED_SUFFIXES or kind == "conll")
        return kind if explicit and kind in KINDS else None
    if kind not in KINDS:
        raise DataError(name, f"cannot label a {kind or PurePosixPath(base).suffix or 'such'} file",
                        hint="use .txt (one text per line), .jsonl, .conll or .parquet (all but Parquet may be .gz)")
    return kind


def output_stem(relative: str) -> str:
    """``sub/a.jsonl.gz`` → ``sub/a``; a name whose suffix is not a format's (``eng.testa``) keeps it."""
    path = PurePosixPath(relative)
    if path.suffix.lower() == ".gz":
        path = path.with_suffix("")
    if path.suffix.lower() in NAME_SUFFIXES:
        path = path.with_suffix("")
    return str(path)


def _has_magic(path: str) -> bool:
    return glob.has_magic(path)


def _glob_match(parts: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether path segments ``parts`` match glob segments ``patterns`` as :func:`glob.glob` would (``*`` stays
    within a segment, ``**`` spans any number of them): the rule for ``s3://`` globs too."""
    if not patterns:
        return not parts
    if patterns[0] == "**":
        return any(_glob_match(parts[i:], patterns[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], patterns[0]) and _glob_match(parts[1:], patterns[1:])


def _glob_base(pattern: str) -> str:
    parts = PurePosixPath(pattern).parts
    fixed = [part for part in parts[:next(i for i, part in enumerate(parts) if _has_magic(part))]]
    return str(PurePosixPath(*fixed)) if fixed else "."


def _list_one(argument: str, storage: Storage) -> tuple[list[tuple[str, str]], Root | None]:
    """``([(uri, relative name)], root)`` for one INPUT argument: a file, a directory or a glob."""
    from pyarrow import fs

    remote = is_remote(argument)
    filesystem, path = storage.filesystem(argument)
    prefix = "s3://" if remote else ""
    if _has_magic(argument):
        base = _glob_base(path)
        pattern = path
        recursive = "**" in argument
        if remote:
            infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
            found = [info.path for info in infos if info.type == fs.FileType.File
                     and _glob_match(info.path.split("/"), pattern.split("/"))]
        else:
            found = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        return [(prefix + p, os.path.relpath(p, base)) for p in sorted(found)], Root(prefix + base, recursive)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [(argument if remote else path, PurePosixPath(path).name)], None
    if info.type == fs.FileType.Directory:
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        found = sorted(i.path for i in infos if i.type == fs.FileType.File)
        return [(prefix + p, os.path.relpath(p, path)) for p in found], Root(prefix + path, True)
    raise DataError(argument, "not found", hint="give a file, a directory or a glob (quoted), local or s3://")


def list_inputs(arguments: Sequence[str], storage: Storage) -> tuple[list[InputFile], list[Root]]:
    """Every file to label, in a stable order, and the directories they were listed from.

    Raises:
        DataError: an argument that matches nothing, a file given by name of a kind that cannot be labelled, no
            labelable file at all, or two inputs whose outputs would have the same name.
    """
    files: list[InputFile] = []
    roots: list[Root] = []
    seen: dict[str, str] = {}
    for argument in arguments:
        listed, root = _list_one(argument, storage)
        roots += [root] if root else []
        for uri, relative in listed:
            kind = file_kind(uri, listed=root is not None)
            if kind is None:
                continue
            name = output_stem(relative)
            if name in seen and seen[name] != uri:
                raise DataError(uri, f"its output would have the same name ({name}) as that of {seen[name]}",
                                hint="label them in separate jobs, or give their common directory as INPUT")
            if name not in seen:
                seen[name] = uri
                files.append(InputFile(uri, kind, name))
    if not files:
        raise DataError(", ".join(arguments), "no file to label (.txt, .jsonl, .ndjson, CoNLL or .parquet; .gz too)")
    return files, roots


def _inside(child: str, parent: str) -> bool:
    """Whether path ``child`` is ``parent`` or below it (both absolute, or both ``s3://``)."""
    if is_remote(child) != is_remote(parent):
        return False
    if not is_remote(child):
        child, parent = os.path.realpath(child), os.path.realpath(parent)
    child, parent = child.rstrip("/"), parent.rstrip("/")
    return child == parent or child.startswith(parent + "/")


def check_output_location(output: str, files: Sequence[InputFile], roots: Sequence[Root]) -> None:
    """Refuse, before any work, an OUTPUT directory that is or lies inside an input directory, that holds an
    input, or that is a file (an input itself, or anything else).

    Raises:
        DataError: naming the input concerned.
    """
    target = output if is_remote(output) else os.path.abspath(output)
    for root in roots:
        if _inside(target, root.uri) and (root.recursive or target.rstrip("/") == root.uri.rstrip("/")):
            raise DataError(output, f"is inside the input directory {root.uri}: its files would be read as input "
                            "on the next run", hint="write the output outside every INPUT directory")
    for item in files:
        if _inside(item.uri, target):
            raise DataError(output, f"holds the input {item.uri}", hint="write the output to a directory of its own")
    if not is_remote(target) and os.path.exists(target) and not os.path.isdir(target):
        raise DataError(output, "is a file; OUTPUT is a directory (one output file per input file)")


@contextlib.contextmanager
def local_copy(uri: str, storage: Storage) -> Iterator[Path]:
    """A local path holding ``uri``'s bytes: the file itself, or a temporary copy of a remote one."""
    if not is_remote(uri):
        yield Path(uri)
        return
    filesystem, path = storage.filesystem(uri)
    folder = tempfile.mkdtemp(prefix="bilstm-ray-")
    try:
        local = Path(folder) / PurePosixPath(path).name  # the name keeps its .gz
        with filesystem.open_input_stream(path) as source, open(local, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROWS)


def read_rows(index: int, item: InputFile, storage: Storage, text_field: str, task: str, max_line_bytes: int,
              window: int = 4096) -> Iterator[pa.Table]:
    """The rows (:data:`ROWS`) of one input file in input order, in tables of at most :data:`CHUNK_ROWS`,
    ending with the file's marker row. Bad lines become rows with an ``error``; a file that cannot be read
    as its name says (JSONL in a .txt file, a Parquet file without the text column, a truncated .gz) gives
    an error row at the line where that showed (0: the whole file) and the rows read before it."""
    rows: list[dict[str, Any]] = []
    count = 0
    for row in _records(index, item, storage, text_field, task, max_line_bytes, window):
        rows.append(row)
        count += 1
        if len(rows) >= CHUNK_ROWS:
            yield _table(rows)
            rows = []
    rows.append({"file_index": index, "line": 0, "error": END_OF_FILE, "rows_in_file": count})
    yield _table(rows)


def _records(index: int, item: InputFile, storage: Storage, text_field: str, task: str, max_line_bytes: int,
             window: int) -> Iterator[dict[str, Any]]:
    if item.kind == "parquet":
        yield from _parquet_records(index, item, storage, text_field)
        return
    with local_copy(item.uri, storage) as path:
        try:
            check_looks_like(path, item.kind, task, text_field)
        except DataError as error:
            yield {"file_index": index, "line": 0, "error": error.problem}
            return
        reader = InputReader(path, text_field, window, max_line_bytes)
        line, document = 0, 0
        try:
            for chunk in reader.windows():
                for record in chunk.items:
                    line = record.line
                    if isinstance(record, Text):
                        # a lone surrogate cannot be stored in an Arrow string: refused here, as the job words it
                        problem = text_problem(record.text) if SURROGATE.search(record.text) else None
                        yield {"file_index": index, "line": line, **({"text": record.text} if problem is None else
                                                               {"error": f"text {problem}"})}
                    elif isinstance(record, Sentence):
                        yield {"file_index": index, "line": line, "sentence": record.tokens, "document": document}
                    elif isinstance(record, DocStart):
                        document += 1
                    elif isinstance(record, Bad):
                        yield {"file_index": index, "line": line, "error": record.reason}
        except DataError as error:  # a truncated .gz, an I/O error: what was read stands, the rest is named
            yield {"file_index": index, "line": line + 1, "error": error.problem}


def _parquet_records(index: int, item: InputFile, storage: Storage, text_field: str) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    filesystem, path = storage.filesystem(item.uri)
    try:
        parquet = pq.ParquetFile(filesystem.open_input_file(path))
    except (OSError, pa.ArrowException) as error:
        yield {"file_index": index, "line": 0, "error": f"cannot be read as Parquet ({error})"}
        return
    names = parquet.schema_arrow.names
    if text_field not in names:
        yield {"file_index": index, "line": 0, "error": f"has no column {text_field!r} (columns: {', '.join(names)}); "
               "set --text-field"}
        return
    row = 0
    for group in range(parquet.num_row_groups):
        for value in parquet.read_row_group(group, columns=[text_field]).column(0).to_pylist():
            row += 1
            if isinstance(value, str):
                yield {"file_index": index, "line": row, "text": value}
            else:  # the job's screen words the refusal as for any text that is not a string
                kind = "null" if value is None else type(value).__name__
                yield {"file_index": index, "line": row, "error": f"text is a {kind}, not a string"}
