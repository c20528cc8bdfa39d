"""The model directory on disk: atomic writes, checksums, and reading only what meta.json lists.

Layout (no pickle anywhere)::

    meta.json           the layout in toolkit/meta.py (format, task, model config, labels, tokenizer,
                        training record, provenance, sha256 + size of every other file)
    vocab.json          (and any other JSON/tokenizer files the task needs: its spec says which)
    model.safetensors   the network's plain state_dict

This module knows files, not tasks: what a task's meta.json holds and how its network is rebuilt is the task's
spec (``toolkit.specs``). Loading validates the contract and fails with a :class:`~toolkit.errors.ModelDirError`
that names the missing or mismatched piece. Directories are written atomically: a crash mid-export never leaves
a half-written model where a good one was. A write that fails (disk full, read-only, no permission) removes
what it had written and is one :class:`~toolkit.errors.OutputError` line: the directory is complete or absent.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ModelDirError, OutputError
from toolkit.meta import FORMAT_VERSION, ModelMeta, upgrade
from toolkit.registry import task_names

META_FILE = "meta.json"
WEIGHTS_FILE = "model.safetensors"

__all__ = ["FORMAT_VERSION", "META_FILE", "WEIGHTS_FILE", "WRITE_ERRNOS", "ModelDir", "ModelMeta", "add_files",
           "cannot_write", "check_files", "fsync_directory", "load_model_dir", "read_meta", "remove_torn_writes",
           "replace_directory", "save_model_dir", "write_file_atomically", "writing"]

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
WRITE_ERRNOS = FULL_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
"""The OSErrors a user can cause, or fix, by where they write (no room, read-only, not theirs, a failing disk)
rather than a bug."""


def cannot_write(error: OSError, what: str, outcome: str = "", elsewhere: str = "write it elsewhere") -> OutputError:
    """One line for a write that failed with one of :data:`WRITE_ERRNOS`: what, why, what was left, what to do.

    Args:
        error: the failure.
        what: what could not be written, with its path ("the model directory runs/x/model").
        outcome: what is left on disk ("nothing was written there").
        elsewhere: how to write it somewhere else ("choose another --export_dir").
    """
    if error.errno == errno.ENOENT:  # only where the caller asks (writing_output): its folder vanished mid-job
        return OutputError(f"cannot write {what}: its folder is gone (deleted while this ran?), and what was written "
                           f"there with it: recreate the folder and run again, or {elsewhere}")
    if error.errno in FULL_ERRNOS:
        advice = f"free some disk space or {elsewhere}"
    elif error.errno == errno.EIO:
        advice = f"check the disk or {elsewhere}"
    else:
        advice = f"{elsewhere}, or make it writable"
    reason = error.strerror or str(error)
    return OutputError(f"cannot write {what}: {reason}" + (f"; {outcome}" if outcome else "") + f": {advice}, "
                       "then run again")


@dataclass
class ModelDir:
    """A validated model directory: its metadata, JSON side files and weights."""

    path: Path
    meta: ModelMeta
    state_dict: dict[str, Any]

    @property
    def task(self) -> str:
        return self.meta.task

    def json_file(self, name: str) -> Any:
        """A JSON side file (e.g. ``vocab.json``), checked against meta.json's checksum on load."""
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelDirError(f"{path} is not valid JSON ({error}); re-export the model") from None

    def file(self, name: str) -> Path:
        """Path of a side file; only files listed (and so checksummed) in meta.json may be read.

        Raises:
            ModelDirError: ``name`` is not in meta.json's file list (a loader never reads an unchecked file).
        """
        if name not in self.meta.files:
            raise ModelDirError(f"{self.path / META_FILE} does not list {name}, which a {self.task!r} model needs; "
                                "the directory is incomplete or was edited: re-export the model")
        return self.path / name

    def folder(self, name: str) -> Path:
        """A subfolder read as a whole by another library (e.g. a transformer's files for Hugging Face).

        Raises:
            ModelDirError: the folder holds a file meta.json does not list (it would be read unchecked).
        """
        folder = self.path / name
        listed = {item for item in self.meta.files if item.startswith(f"{name}/")}
        if not listed:
            raise ModelDirError(f"{self.path / META_FILE} lists no files under {name}/, which this model needs; "
                                "re-export the model")
        present = {item.relative_to(self.path).as_posix() for item in folder.rglob("*") if not item.is_dir()}
        unlisted = sorted(present - listed)
        if unlisted:
            raise ModelDirError(f"{folder} holds files meta.json does not list ({', '.join(unlisted[:3])}); they "
                                "would be read unchecked: remove them or re-export the model")
        return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's or directory's contents to disk (directories: the names in them)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(path: Path) -> None:
    """Make the names in folder ``path`` durable: a rename into it, a file created or deleted there.

    A no-op where a directory cannot be opened or flushed (Windows, some network filesystems): there the rename
    is as durable as the platform makes it, and the files' own contents were flushed before.
    """
    with contextlib.suppress(OSError):
        _fsync(path)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def write_file_atomically(path: Path, data: bytes, *, what: str | None = None, outcome: str = "",
                          elsewhere: str = "write it elsewhere") -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never a mix, and a crash (a kill,
    a power cut) leaves one of the two on disk. One writer for every such file (report pages, the language-model
    corpus cache, the batch job's progress record).

    The bytes go to a temporary file of a name no other writer gets (``.NAME.tmp-XXXXXXXX`` beside ``path``),
    which is flushed to disk, renamed over ``path``, and then the folder is flushed, so the rename itself
    survives a power cut. If anything fails the temporary file is removed (a torn one only holds space) and
    ``path`` keeps its old content; a killed writer's temporary file is left for :func:`remove_torn_writes`.

    Args:
        path: the file to replace (or create); its folder must exist.
        data: its new content.
        what: what is written, with its path, for :func:`cannot_write`: a failure from :data:`WRITE_ERRNOS` is
            then that one :class:`OutputError` line, with ``outcome`` and ``elsewhere``. None: the
            :class:`OSError` itself is raised, for a caller that words it its own way.

    Raises:
        OutputError: (``what`` given) no room, read-only, no permission, a failing disk; ``path`` is unchanged.
    """
    with writing(what, outcome, elsewhere) if what is not None else contextlib.nullcontext():
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path))
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())  # the bytes are on disk before the name points at them
            os.chmod(temporary, 0o644)  # mkstemp makes 0600 files; these are meant to be read by other users
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink(missing_ok=True)
            raise
        fsync_directory(path.parent)


def remove_torn_writes(path: Path) -> list[Path]:
    """Delete the temporary files that killed :func:`write_file_atomically` calls left beside ``path``; returns them.

    Only for a caller that knows no other writer of ``path`` is running (the batch job holds its lock), since a
    running writer's temporary file looks the same.
    """
    torn = sorted(path.parent.glob(glob.escape(_temporary_prefix(path)) + "*"))
    for item in torn:
        with contextlib.suppress(OSError):
            item.unlink()
    return torn


def _fsync_tree(root: Path) -> None:
    for item in sorted(root.rglob("*"), reverse=True):  # files before the directories that name them
        _fsync(item)
    _fsync(root)


def recover_interrupted_swap(target: Path) -> None:
    """Put back the previous model directory if a crash fell between the two renames of a swap.

    A swap renames ``target`` to ``.target.old-PID`` and the new directory to ``target``. A crash between
    the two leaves no ``target``; the next save or load restores the old one, so a reader always finds
    either the old model or the new one.
    """
    if target.exists():
        return
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda item: item.stat().st_mtime)
    complete = [old for old in olds if (old / META_FILE).is_file()]
    if complete:
        os.replace(complete[-1], target)


def replace_directory(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target`` durably; an existing model directory ``target`` is swapped out, then removed."""
    _fsync_tree(staging)  # the contents are on disk before any name points at them
    recover_interrupted_swap(target)
    if target.exists():
        if not (target / META_FILE).is_file():
            raise ModelDirError(f"{target} exists and is not a model directory; refusing to overwrite it")
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)  # the old model goes back rather than waiting for the next load's recovery
            raise
        _fsync(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
        _fsync(target.parent)


def _finish(staging: Path, meta: ModelMeta, target: Path) -> None:
    """List and checksum every file in ``staging``, write meta.json there, and swap it in as ``target``."""
    meta.files = {
        item.relative_to(staging).as_posix(): {"sha256": _sha256(item), "bytes": item.stat().st_size}
        for item in sorted(staging.rglob("*")) if item.is_file()
    }
    (staging / META_FILE).write_text(json.dumps(meta.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
    # mkdtemp makes the directory private (0700); a model directory is meant to be shared with
    # services that may run as another user.
    for item in staging.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)
    staging.chmod(0o755)
    replace_directory(staging, target)


def save_model_dir(
    path: str | Path,
    meta: ModelMeta,
    state_dict: dict[str, Any],
    json_files: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write a model directory atomically and return its path.

    Args:
        path: target directory (replaced if it is an existing model directory).
        meta: everything meta.json says but ``files``, which is filled here from what is written.
        state_dict: the network's tensors (saved with safetensors).
        json_files: side files to write as JSON, e.g. ``{"vocab.json": {...}}``.
        extra_files: existing files to copy in, e.g. a transformer's ``config.json``.
    """
    from safetensors.torch import save

    if meta.task not in task_names():
        raise ValueError(f"unknown task {meta.task!r}; choose one of {task_names()}")
    target = Path(path)
    with writing(f"the model directory {target}", "nothing was written there (a model already there is kept)"):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state_dict.items()}
            # Serialised in memory and written by Python (not save_file): a full disk is then an OSError with
            # its errno, which safetensors' own writer turns into a plain SafetensorError.
            (staging / WEIGHTS_FILE).write_bytes(save(tensors, metadata={"format": "pt", "task": meta.task}))
            for name, content in (json_files or {}).items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
            for name, source in (extra_files or {}).items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, staging / name)
            _finish(staging, meta, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


@contextlib.contextmanager
def writing(what: str, outcome: str, elsewhere: str = "write it elsewhere",
            errnos: frozenset[int] = WRITE_ERRNOS) -> Iterator[None]:
    """Turn a write failure of ``errnos`` (:data:`WRITE_ERRNOS`) inside the block into :func:`cannot_write`'s one
    line; any other OSError is a bug and is raised as it is."""
    try:
        yield
    except OSError as error:
        if error.errno not in errnos:
            raise
        raise cannot_write(error, what, outcome, elsewhere) from None


def read_meta(path: str | Path) -> ModelMeta:
    """Read and check ``meta.json`` (format, task, file list), upgrading older formats."""
    root = Path(path)
    recover_interrupted_swap(root)
    if not root.is_dir():
        raise ModelDirError(f"model directory not found: {root}" if not root.exists() else f"{root} is not a directory")
    meta_path = _inside(root, META_FILE)
    if not meta_path.is_file():
        raise ModelDirError(f"{root} is not a model directory: {META_FILE} is missing (export one with `bilstm fit`)")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelDirError(f"{meta_path} is corrupt (not valid JSON: {error}); re-export the model") from None
    if not isinstance(data, dict):
        raise ModelDirError(f"{meta_path} is corrupt: expected a JSON object")
    meta = ModelMeta.from_json(upgrade(data, str(meta_path)), str(meta_path))
    if meta.task not in task_names():
        raise ModelDirError(f"{meta_path}: unknown task {meta.task!r} (this toolkit knows {list(task_names())})")
    _check_file_list(meta.files, meta_path)
    return meta


def _check_file_list(files: Any, meta_path: Path) -> None:
    """``files`` must map relative names inside the directory to ``{"sha256": str, "bytes": int}``."""
    if not isinstance(files, dict):
        raise ModelDirError(f"{meta_path}: 'files' must be an object of file name → sha256/bytes; re-export the model")
    for name, entry in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelDirError(f"{meta_path} lists a file outside the directory: {name!r}")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)):
            raise ModelDirError(f"{meta_path}: the entry for {name!r} needs a sha256 string and a bytes count; "
                                "re-export the model")


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refused if it or a folder on the way is a symbolic link or it leads out of ``root``."""
    item = root / name
    for step in [item, *(root / folder for folder in Path(name).parents[:-1])]:  # the file and its folders
        if step.is_symlink():
            raise ModelDirError(f"{step} is a symbolic link; a model directory holds plain files only (a link "
                                "could make the loader read a file elsewhere): copy the real file in")
    try:
        item.resolve().relative_to(root.resolve())
    except ValueError:
        raise ModelDirError(f"{item} leads outside the model directory {root}") from None
    return item


def check_files(root: Path, files: dict[str, dict[str, Any]]) -> None:
    """Every file listed in ``meta.json`` is present in ``root`` with its recorded size and sha256.

    Checksums catch corruption (a truncated copy, a flipped bit, a file swapped by mistake), not tampering:
    whoever can write the files can write a matching meta.json. Links are refused outright.
    """
    for name, expected in files.items():
        item = _inside(root, name)
        if not item.is_file():
            raise ModelDirError(f"{root} is incomplete: {name} is missing")
        if item.stat().st_size != expected["bytes"] or _sha256(item) != expected["sha256"]:
            raise ModelDirError(f"{item} is corrupt (size or sha256 differs from {META_FILE}); re-export the model")


def load_model_dir(path: str | Path) -> ModelDir:
    """Validate a model directory and load its weights (safetensors; never pickle).

    Raises:
        ModelDirError: naming the missing, corrupt or incompatible piece.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(path)
    meta = read_meta(root)
    files = meta.files
    if WEIGHTS_FILE not in files:
        raise ModelDirError(f"{root / META_FILE} does not list {WEIGHTS_FILE}; re-export the model")
    check_files(root, files)
    try:
        state_dict = load_file(root / WEIGHTS_FILE)
    except (SafetensorError, OSError) as error:
        raise ModelDirError(f"{root / WEIGHTS_FILE} cannot be read as safetensors: {error}") from None
    return ModelDir(root, meta, state_dict)


def add_files(path: str | Path, new_files: dict[str, Path], backends: dict[str, dict[str, Any]]) -> Path:
    """Add files (e.g. ``model.onnx``) to a model directory, atomically, listed and checksummed in meta.json.

    The directory is rebuilt beside the old one from the files its meta.json lists (each checked first) plus
    ``new_files``, with ``backends`` merged into meta.json's ``backends``, then swapped in: a crash leaves the old
    directory intact, and the new files are read through the same checksums as the weights.
    """
    root = Path(path)
    meta = read_meta(root)
    check_files(root, meta.files)
    with writing(f"{', '.join(new_files)} into the model directory {root}", "the directory is unchanged",
                 "copy the model directory to another disk and export it there"):
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        try:
            sources = {name: root / name for name in meta.files} | new_files
            for name, source in sources.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, staging / name)
            meta.backends = {**meta.backends, **backends}
            _finish(staging, meta, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return root
