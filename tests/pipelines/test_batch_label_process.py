"""The real `bilstm label` in subprocesses: SIGKILL mid-run then resume, and a 2-process DDP run on CPU.

Both must end with the same bytes (output and errors file) as one uninterrupted single-process run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipelines.label import label_file
from tests.conftest import BILSTM, ROOT, run_bilstm
from tests.pipelines.test_batch_label import one_torch_thread, sample_texts

LINES = 3000
WINDOW = "100"


@pytest.fixture(scope="module")
def job_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .jsonl input with a few bad lines scattered through it (they must land in the errors file)."""
    path = tmp_path_factory.mktemp("batch") / "texts.jsonl"
    rows = [json.dumps({"id": i, "text": text}) for i, text in enumerate(sample_texts(LINES))]
    for position in (5, 1234, 2321):
        rows[position] = '{"text": broken'
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def one_thread():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # the same thread count in every process (and no collapse here)
        yield


@pytest.fixture(scope="module")
def reference(textcat_model_dir, job_input, one_thread) -> Path:
    """One uninterrupted single-process run (in this process, one thread: the CLI runs the same function)."""
    output = job_input.with_name("reference.jsonl")
    with one_torch_thread():
        assert label_file(textcat_model_dir, job_input, output, window=int(WINDOW), progress=False)["errors"] == 3
    return output


def assert_same_files(output: Path, reference: Path) -> None:
    assert output.read_bytes() == reference.read_bytes()
    errors = Path(f"{output}.errors.jsonl")
    assert errors.read_bytes() == Path(f"{reference}.errors.jsonl").read_bytes()
    assert [json.loads(line)["line"] for line in errors.read_text().splitlines()] == [6, 1235, 2322]
    assert sorted(p.name for p in output.parent.iterdir() if p.name.startswith(output.name)) == [
        output.name, errors.name]  # no partial, progress, lock or shard files left


@pytest.mark.slow
def test_sigkill_mid_run_then_the_same_command_resumes(textcat_model_dir, job_input, reference, tmp_path):
    output = tmp_path / "labels.jsonl"
    args = ["label", str(textcat_model_dir), str(job_input), str(output), "--window", WINDOW]
    job = subprocess.Popen([*BILSTM, *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = Path(f"{output}.progress")
    deadline = time.monotonic() + 300
    committed = 0
    while committed < 500 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            committed = json.loads(progress.read_text())["records"]
        except (OSError, ValueError):  # not written yet
            continue
    job.send_signal(signal.SIGKILL)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == -signal.SIGKILL, stderr.decode()[-2000:]  # killed, not finished
    at_kill = json.loads(progress.read_text())
    assert 500 <= at_kill["records"] < LINES - 3 and not output.exists()

    resumed = run_bilstm(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {output} at input line {at_kill['next']['line'] + 1}" in resumed.stderr
    summary = json.loads(resumed.stderr.strip().splitlines()[-1])
    assert (summary["records"], summary["errors"]) == (LINES - 3, 3)
    assert_same_files(output, reference)


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_the_single_process_bytes(textcat_model_dir, job_input, reference, tmp_path):
    output = tmp_path / "labels.jsonl"
    result = run_bilstm("label", str(textcat_model_dir), str(job_input), str(output), "--window", WINDOW,
                        "--devices", "2", "--accelerator", "cpu", "--strategy", "ddp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert (summary["records"], summary["errors"]) == (LINES - 3, 3)
    assert_same_files(output, reference)
