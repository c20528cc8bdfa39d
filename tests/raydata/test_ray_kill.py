"""A Ray labelling job killed mid-way — its driver, or the node its model actor runs on — and the same command run
again ends with exactly the records of an uninterrupted run: none lost, none twice, no temporary file left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the [ray] extra (ray[data]) is not installed")

from tests.conftest import BILSTM, ROOT  # noqa: E402
from tests.pipelines.test_batch_label import sample_texts  # noqa: E402
from tests.raydata.records import assert_same, expected, predictions, read_jsonl, reference  # noqa: E402

KILL_TEXTS = sample_texts(6000)


@pytest.fixture(scope="module")
def kill_references(tmp_path_factory, textcat_model_dir) -> tuple[dict[str, dict], tuple[list[dict], list[dict]]]:
    """`bilstm label`'s record of each text the kill tests label (one job over them all), and its records and
    errors for their c.jsonl."""
    root = tmp_path_factory.mktemp("kill_references")
    by_text = predictions(textcat_model_dir, KILL_TEXTS, root)
    return by_text, reference(textcat_model_dir, kill_inputs(root / "in", 1)[-1], root)


def kill_inputs(folder: Path, parts: int) -> list[Path]:
    """a.txt (200 texts), the other 5,800 texts in b.txt (``parts`` 1) or in b0.txt … (``parts`` files), and
    c.jsonl (30 texts and a bad line), in the order the job labels them."""
    folder.mkdir()
    rest = KILL_TEXTS[200:]
    step = len(rest) // parts
    bodies = {"a.txt": KILL_TEXTS[:200], **{f"b{part if parts > 1 else ''}.txt": rest[part * step:(part + 1) * step]
                                            for part in range(parts)}}
    for name, texts in bodies.items():
        (folder / name).write_text("\n".join(texts) + "\n")
    (folder / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in KILL_TEXTS[:30]) + "{bad\n")
    return [*(folder / name for name in bodies), folder / "c.jsonl"]


def assert_like_an_uninterrupted_run(output: Path, paths: list[Path], references) -> None:
    """Every input's records and errors equal `bilstm label`'s (none lost, none twice), no temporary file left."""
    by_text, (c_records, c_errors) = references
    for path in paths:
        if path.suffix == ".txt":
            records, errors = expected(by_text, dict(enumerate(path.read_text().splitlines(), 1))), []
        else:
            records, errors = c_records, c_errors
        assert_same(read_jsonl(output / f"{path.stem}.jsonl"), records, str(path))
        errors_file = output / f"{path.stem}.errors.jsonl"
        assert (read_jsonl(errors_file) if errors_file.exists() else []) == [{"file": str(path), **e} for e in errors]
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [".lock", "manifest.json", "c.errors.jsonl", *(f"{path.stem}.jsonl" for path in paths)])


def ray_job(cluster, model_dir: Path, inputs: Path, output: Path, *options: str) -> tuple[list[str], dict]:
    """A `bilstm label --engine ray` command on ``cluster`` (one model actor) and the environment to run it in."""
    command = [*BILSTM, "label", str(model_dir), str(inputs), str(output), "--engine", "ray", "--num-actors", "1",
               "--ray-address", cluster.address, "--window", "128", "--quiet", *options]
    return command, {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def wait_for_commit(job: subprocess.Popen, path: Path) -> None:
    deadline = time.monotonic() + 240
    while not path.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists() and job.poll() is None, f"{path.name} was not committed while the job ran"


def test_a_killed_job_run_again_ends_with_the_records_of_an_uninterrupted_run(cluster, textcat_model_dir,
                                                                               kill_references, tmp_path):
    # one actor: a's rows come back with b's, so the driver is killed while it writes b.jsonl
    paths = kill_inputs(tmp_path / "in", 1)
    output = tmp_path / "labels"
    command, env = ray_job(cluster, textcat_model_dir, paths[0].parent, output)
    job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_commit(job, output / "a.jsonl")
    job.send_signal(signal.SIGKILL)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
    assert (output / "a.jsonl").exists() and not (output / "c.jsonl").exists()
    committed = (output / "a.jsonl").stat()
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stderr.strip().splitlines()[-1])
    assert (summary["skipped"], summary["files"]) == (1, 2)
    assert (output / "a.jsonl").stat().st_ino == committed.st_ino  # committed once, kept
    assert_like_an_uninterrupted_run(output, paths, kill_references)


def test_a_worker_node_killed_mid_job_ends_with_the_records_of_an_uninterrupted_run(cluster, textcat_model_dir,
                                                                                     kill_references, tmp_path):
    """The second node, where the job's only model actor runs, is killed (every process of it, no warning) once
    a.jsonl is committed, with b0…b7 still to label. Ray restarts the actor on the surviving node, recovers the
    lost blocks and retries the lost calls, and the job ends; had it failed, the same command again must end the
    same way: every record once."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=2)
    class Holder:  # holds the head node's CPUs, so that the model actor starts on the second node
        def ready(self) -> bool:
            return True

    # one file per read task and per actor call: a.jsonl comes back while the actor labels the b files
    paths = kill_inputs(tmp_path / "in", 8)
    output = tmp_path / "labels"
    command, env = ray_job(cluster, textcat_model_dir, paths[0].parent, output)
    holder = Holder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(cluster.head_node.node_id,
                                                                               soft=False)).remote()
    assert ray.get(holder.ready.remote(), timeout=60)
    job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_commit(job, output / "a.jsonl")
        (victim,) = cluster.worker_nodes
        cluster.remove_node(victim, allow_graceful=False)
        assert not (output / "b7.jsonl").exists(), "the job was done before the node was killed: make it longer"
        ray.kill(holder)  # the surviving node's CPUs are free: the lost actor can restart there
        _, stderr = job.communicate(timeout=240)
    finally:
        if job.poll() is None:  # a failed check above, or a job that hangs after the loss
            job.kill()
            job.communicate()
        ray.kill(holder)
        if not cluster.worker_nodes:
            cluster.add_node(num_cpus=2)  # the module's cluster has two nodes again
    if job.returncode != 0:  # the loss failed the job: the same command goes on from the committed files
        assert job.returncode > 0, stderr.decode()[-3000:]
        rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert json.loads(rerun.stderr.strip().splitlines()[-1])["skipped"] >= 1
    else:
        assert json.loads(stderr.decode().strip().splitlines()[-1])["files"] == len(paths)
    assert_like_an_uninterrupted_run(output, paths, kill_references)
    cluster.wait_for_nodes()
