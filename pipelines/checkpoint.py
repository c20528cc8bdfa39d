"""Crash-safe output: append-only files committed window by window under a small JSON progress record.

A job writes its output to ``X.partial`` (and bad lines to ``X.errors.partial``). After each window it
fsyncs them, then atomically replaces ``X.progress`` (:func:`toolkit.artifact.write_file_atomically`: a
temporary file of its own, fsync, rename, fsync the directory) with where the *next* window starts in the
input, the SHA-256 of the input bytes consumed so far and the committed length of every output file.
Whatever a crash (SIGKILL, power loss) leaves behind, the progress record describes a consistent prefix: on
restart the files are truncated to the recorded lengths (and a killed write's temporary record is deleted)
and the input is read again from the recorded offset, so no record is lost or written twice.

Resuming is refused (:class:`ResumeError`, with what to do) when the model, the options or the input
changed since the interrupted run; ``restart=True`` (``--restart``) starts over instead. An exclusive
``flock`` on the progress file keeps two jobs from writing the same output; the kernel drops it when a job
dies, so a killed job never leaves a stale lock.

A write that fails (disk full, quota, the filesystem turned read-only, permissions, a failing disk) raises
:class:`~toolkit.errors.OutputError` (:func:`toolkit.artifact.writing`'s one line, naming the file): the protocol
above already makes such a failure a crash the job recovers from (nothing uncommitted is trusted), so the same
command, once the cause is fixed, resumes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.sources import Position
from toolkit.artifact import WRITE_ERRNOS, fsync_directory, remove_torn_writes, write_file_atomically, writing
from toolkit.errors import ToolkitError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows; the job works there without the lock
    fcntl = None

FORMAT = 1

__all__ = ["Checkpoint", "ResumeError", "State", "read_state", "writing_output"]


class ResumeError(ToolkitError):
    """An interrupted job's checkpoint does not match this run (or another job holds it)."""


RESUMES = "the job keeps what it committed and the same command resumes from there"
ELSEWHERE = "give another OUTPUT (that starts over)"
JOB_WRITE_ERRNOS = WRITE_ERRNOS | {errno.ENOENT}
"""A job's own files are only ever written, so ENOENT there means the output's folder was deleted under the job."""


def writing_output(path: Path) -> contextlib.AbstractContextManager[None]:
    """:func:`toolkit.artifact.writing` for one of the job's files: a write that fails for want of room, a
    read-only filesystem, permissions or a failing disk is one :class:`OutputError` line naming ``path`` and
    saying that the same command resumes (nothing written after the last commit is trusted), and so is a folder
    deleted under the job (:data:`JOB_WRITE_ERRNOS`)."""
    return writing(str(path), RESUMES, ELSEWHERE, errnos=JOB_WRITE_ERRNOS)


@dataclass
class State:
    """What a checkpoint records: where to go on and how much of every file is committed."""

    fingerprint: dict[str, Any]
    next: Position = field(default_factory=Position)
    input_sha256: str = ""
    """SHA-256 of the input bytes before ``next.offset`` (empty = nothing consumed yet)."""
    records: int = 0
    errors: int = 0
    lengths: dict[str, int] = field(default_factory=dict)
    """Committed byte length of each output file, by role (``data``, ``errors``, ``index``)."""
    complete: bool = False
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "next": asdict(self.next)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        return cls(**{**data, "next": Position(**data["next"])})


def _changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return ", ".join(f"{key}: {old.get(key)!r} → {new.get(key)!r}" for key in keys)


def read_state(progress: Path) -> State:
    """The progress record at ``progress``; a :class:`ResumeError` naming the file if it cannot be read."""
    try:
        return State.from_json(progress.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ResumeError(f"{progress}: unreadable checkpoint ({error}); add --restart to start over") from None


class Checkpoint:
    """Append-only output files plus the progress record that says how much of them is committed.

    Args:
        progress: the progress record's path (its ``.lock`` sibling is the job's lock).
        files: role → path of each append-only output (``data`` and ``errors``; ``index`` for shards).
        fingerprint: what must not change between an interrupted run and its resumption (model, input size,
            options); compared as a whole, differences are named in the error.
    """

    def __init__(self, progress: Path, files: dict[str, Path], fingerprint: dict[str, Any]) -> None:
        self.progress = progress
        self.files = files
        self.fingerprint = fingerprint
        self.state = State(fingerprint)
        self._handles: dict[str, Any] = {}
        self._lock: Any = None

    def open(self, restart: bool = False) -> State:
        """Lock, then resume the recorded state (truncating torn writes) or start afresh; returns the state."""
        self._acquire_lock()
        remove_torn_writes(self.progress)  # a killed job's temporary record (the lock says no writer is running)
        if self.progress.exists() and not restart:
            self.state = self._load()
            for role, path in self.files.items() if not self.state.complete else ():
                committed = self.state.lengths.get(role, 0)
                if not path.exists() or path.stat().st_size < committed:
                    raise ResumeError(f"{path}: shorter than its checkpoint {self.progress} records "
                                      "(was it moved or edited?); add --restart to start over")
                with writing_output(path):
                    os.truncate(path, committed)  # drop what was written after the last commit
        else:
            self.state = State(self.fingerprint, lengths=dict.fromkeys(self.files, 0))
            for path in self.files.values():
                with writing_output(path):
                    path.write_bytes(b"")
            self._save_state()
        if not self.state.complete:
            for role, path in self.files.items():
                with writing_output(path):
                    self._handles[role] = open(path, "ab")  # noqa: SIM115
        return self.state

    def _save_state(self) -> None:
        """Replace the progress record with :attr:`state` (atomically and durably: see the module docstring)."""
        with writing_output(self.progress):
            write_file_atomically(self.progress, self.state.to_json().encode("utf-8"))

    def _load(self) -> State:
        state = read_state(self.progress)
        if state.format != FORMAT:
            raise ResumeError(f"{self.progress}: checkpoint format {state.format} (expected {FORMAT}); "
                              "add --restart to start over")
        if state.fingerprint != self.fingerprint:
            raise ResumeError(f"{self.progress}: an interrupted job with a different model, input or options left "
                              f"this checkpoint ({_changes(state.fingerprint, self.fingerprint)}); run the same "
                              "command to resume it, or add --restart to start over")
        return state

    def _acquire_lock(self) -> None:
        if fcntl is None or self._lock is not None:
            return
        lock = self.progress.with_name(self.progress.name + ".lock")
        with writing_output(lock):
            self._lock = open(lock, "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise ResumeError(f"{self.progress}: another job is writing this output; wait for it or stop it") from None

    def check_input(self, digest: str) -> None:
        """Refuse to go on if the input bytes already consumed are not the ones the checkpoint recorded."""
        if self.state.input_sha256 and digest != self.state.input_sha256:
            raise ResumeError(f"{self.progress}: the input changed since the interrupted run (its first "
                              f"{self.state.next.offset} bytes differ); add --restart to label it from the start")

    def commit(self, chunks: dict[str, bytes], end: Position, digest: str, records: int, errors: int) -> None:
        """Append one window's bytes to each file, make them durable, then record the new state atomically.

        Raises:
            OutputError: a write or fsync failed (disk full…): the state stays at the last commit, so whatever
                reached the files since is cut off by the next run, which resumes from there.
        """
        for role, data in chunks.items():
            if data:
                with writing_output(self.files[role]):
                    self._handles[role].write(data)
        for role, handle in self._handles.items():
            with writing_output(self.files[role]):
                handle.flush()
                os.fsync(handle.fileno())  # where delayed allocation reports a full disk
        state = self.state
        for role, data in chunks.items():
            state.lengths[role] = state.lengths.get(role, 0) + len(data)
        state.next, state.input_sha256 = end, digest
        state.records += records
        state.errors += errors
        self._save_state()

    def mark_complete(self) -> None:
        """Record that every window is committed (the files are final; only renames/merges remain)."""
        self.close_files()
        self.state.complete = True
        self._save_state()

    def close_files(self) -> None:
        for role, handle in self._handles.items():
            with writing_output(self.files[role]):
                handle.close()
        self._handles = {}

    def release(self) -> None:
        """After a failure: close the files (dropping what they still buffer) and the lock, keep the progress
        record, so that a rerun (in this process too) resumes from the last commit."""
        for handle in self._handles.values():
            with contextlib.suppress(OSError):  # a full disk fails the buffer's last flush again
                handle.close()
        self._handles = {}
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove(self) -> None:
        """Delete the progress record and release the lock (after the outputs reached their final names)."""
        self.close_files()
        with writing_output(self.progress):
            self.progress.unlink(missing_ok=True)
        fsync_directory(self.progress.parent)
        if self._lock is not None:
            Path(self._lock.name).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None
