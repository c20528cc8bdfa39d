"""A disk that fills up (or an output that turns unwritable) while `bilstm label` runs: one line, status 2,
nothing half-written that a rerun trusts, and the rerun after freeing space writes the uninterrupted bytes.

The full disk is real: a 1 MiB tmpfs mounted for the test (root only; skipped with the reason elsewhere). A
read-only filesystem cannot be had mid-job (remounting with files open for writing is refused), so that case
raises EROFS from ``os.replace``, the call that publishes each progress record.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.label import label_file
from tests.conftest import run_bilstm
from tests.pipelines.test_batch_label import sample_texts
from toolkit import artifact
from toolkit.errors import OutputError

TEXTS = 600
WINDOW = 50


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs at ``tmp_path / "disk"``, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_a_disk_filling_up_mid_job_stops_it_in_one_line_and_the_rerun_resumes_to_the_same_bytes(
        textcat_model_dir, tmp_path, small_disk):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sample_texts(TEXTS)) + "\n")
    reference = tmp_path / "reference.jsonl"
    label_file(textcat_model_dir, source, reference, window=WINDOW)
    size = reference.stat().st_size
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free_bytes(small_disk) - size // 2))  # room for about half the output
    output = small_disk / "labels.jsonl"
    command = ["label", str(textcat_model_dir), str(source), str(output), "--window", str(WINDOW)]

    failed = run_bilstm(*command)
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr and "Exception ignored" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bilstm: error: cannot write {small_disk}/labels.jsonl.")
    assert last.endswith(": No space left on device; the job keeps what it committed and the same command resumes "
                         "from there: free some disk space or give another OUTPUT (that starts over), then run again")
    state = json.loads(Path(f"{output}.progress").read_text())
    assert 0 < state["records"] < TEXTS and not output.exists()  # it had committed some windows, not all
    assert not list(small_disk.glob(".*"))  # no torn temporary record left taking space

    filler.unlink()
    resumed = run_bilstm(*command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {output} at input line {state['next']['line'] + 1}" in resumed.stderr
    assert output.read_bytes() == reference.read_bytes()
    assert sorted(path.name for path in small_disk.iterdir()) == ["labels.jsonl"]


def test_an_output_turning_read_only_mid_job_is_one_line_and_resumable(textcat_model_dir, tmp_path, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sample_texts(200)) + "\n")
    label_file(textcat_model_dir, source, tmp_path / "reference.jsonl", window=WINDOW)
    real, calls = os.replace, {"n": 0}

    def read_only_after_two_commits(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # the start record and two windows got through
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(artifact.os, "replace", read_only_after_two_commits)
    output = tmp_path / "out.jsonl"
    with pytest.raises(OutputError) as error:
        label_file(textcat_model_dir, source, output, window=WINDOW)
    assert str(error.value) == (f"cannot write {output}.progress: Read-only file system; the job keeps what it "
                                "committed and the same command resumes from there: give another OUTPUT (that starts "
                                "over), or make it writable, then run again")
    monkeypatch.undo()
    assert json.loads(Path(f"{output}.progress").read_text())["records"] == 2 * WINDOW
    assert not list(tmp_path.glob(".*"))  # the temporary record the rename did not publish is gone
    resumed = label_file(textcat_model_dir, source, output, window=WINDOW)  # in this process: the lock was freed
    assert resumed["resumed_at_line"] == 2 * WINDOW + 1
    assert output.read_bytes() == (tmp_path / "reference.jsonl").read_bytes()


def test_an_output_folder_deleted_mid_job_is_one_line(textcat_model_dir, tmp_path, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sample_texts(200)) + "\n")
    folder = tmp_path / "labels"
    folder.mkdir()
    real, calls = os.replace, {"n": 0}

    def folder_deleted_after_two_commits(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # the start record and two windows got through; then the folder goes, for real
            shutil.rmtree(folder, ignore_errors=True)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(artifact.os, "replace", folder_deleted_after_two_commits)
    output = folder / "out.jsonl"
    with pytest.raises(OutputError) as error:
        label_file(textcat_model_dir, source, output, window=WINDOW)
    assert str(error.value).startswith(f"cannot write {output}")
    assert "its folder is gone (deleted while this ran?)" in str(error.value)
    assert str(error.value).endswith("recreate the folder and run again, or give another OUTPUT (that starts over)")
    monkeypatch.undo()
    folder.mkdir()
    rerun = label_file(textcat_model_dir, source, output, window=WINDOW)  # starts over: nothing of it was left
    assert rerun["records"] == 200 and len(output.read_text().splitlines()) == 200
