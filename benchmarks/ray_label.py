"""Ray Data labelling (`bilstm label ... --engine ray`) against `bilstm label` in one process, in one run.

    OMP_NUM_THREADS=1 python benchmarks/ray_label.py [--model-dir DIR] [--texts 200000] [--files 20]
        [--num-actors 1] [--actor-threads 1] [--batch-size 64] [--window 1024] [--two-nodes]
        [--memory-only] [--out FILE.json]

IMDB reviews (``../shared/data/imdb/unsup.jsonl.gz`` then ``train.jsonl.gz``, repeated until ``--texts``) are
written once as one JSONL file (for `bilstm label`, which labels one file) and as ``--files`` JSONL parts of it
(for the Ray engine, which writes one output per input). Each job is a real subprocess:

1. ``bilstm label MODEL all.jsonl out.jsonl --threads 1`` (one process, one torch thread);
2. ``bilstm label MODEL parts/ out/ --engine ray --num-actors N --actor-threads T`` (a local Ray instance the
   driver starts on this machine: the actors plus a read task per file, the driver writing the outputs).

Each pair runs at ``--texts`` and at a quarter of it. Reported: wall time (process start to exit, so Ray's
start-up and the actors' model loading are in it) and texts/s of each; the marginal texts/s between the two sizes
(start-up cancels out: the steady rate), their ratio, each engine's fixed cost, and Ray's extra time per batch of
``--window`` rows (``window × (1/ray rate − 1/local rate)``); and memory sampled every 0.5 s: the driver's RSS and
the largest Ray worker's (the processes below the driver named ``ray::…``, Ray's node agents left out), the peak
over the run and, for flatness, the value once 10% of the output files are written against the most after that
(meaningful on a long run only). With ``--two-nodes`` the full-size Ray job also runs in this process on a
two-node local cluster (``ray.cluster_utils.Cluster``: 2 logical CPUs and one actor per node, loopback only).
With ``--memory-only`` just the Ray job runs, once, at ``--texts`` (e.g. 1,000,000), sampled every 2 s, with a
timeline of the driver's and the largest worker's RSS and USS: RSS counts the pages of Ray's shared object store a
process has touched (they grow until the store's pages are all in use, then stay), USS what it alone holds.
Without ``--model-dir`` the bundled sample classifier (``runs/textcat_sample/model``, from ``make demo``) is used.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMDB = ROOT.parent / "shared/data/imdb"
DEFAULT_MODEL = ROOT / "runs/textcat_sample/model"
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
"""Ray's own per-node agents: not the job's workers."""


def write_inputs(folder: Path, count: int, files: int) -> tuple[Path, Path]:
    """``count`` IMDB reviews as one JSONL file and as ``files`` parts of it (streamed, never all in memory)."""
    def reviews():
        while True:
            for name in ("unsup.jsonl.gz", "train.jsonl.gz"):
                with gzip.open(IMDB / name, "rt", encoding="utf-8") as handle:
                    for line in handle:
                        yield json.dumps({"text": json.loads(line)["text"]}) + "\n"

    whole, parts = folder / "all.jsonl", folder / "parts"
    parts.mkdir()
    per_file = -(-count // files)
    lines = itertools.islice(reviews(), count)
    with open(whole, "w", encoding="utf-8") as target:
        for part in range(files):
            chunk = list(itertools.islice(lines, per_file))
            if not chunk:
                break
            (parts / f"part-{part:05}.jsonl").write_text("".join(chunk), encoding="utf-8")
            target.writelines(chunk)
    return whole, parts


def run_job(command: list[str], done: Callable[[], int], total: int, every: float = 0.5) -> dict:
    """Run ``command``; sample the RSS of it and of its ``ray::`` descendants; ``done()`` counts finished outputs."""
    import psutil

    started = time.perf_counter()
    job = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process, samples = psutil.Process(job.pid), []
    while job.poll() is None:
        try:
            workers = []
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a task worker may exit between the listing and this
                    if child.name().startswith("ray::") and not child.name().startswith(AGENTS):
                        workers.append(child.memory_full_info())
            worker = max(workers, key=lambda info: info.rss, default=None)
            driver = process.memory_full_info()
            # RSS counts the object store's shared pages a process has touched; USS is what it alone holds
            samples.append((done(), driver.rss, worker.rss if worker else 0, driver.uss, worker.uss if worker else 0,
                            time.perf_counter() - started))
        except psutil.Error:
            pass
        time.sleep(every)
    stderr = job.stderr.read()
    seconds = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} failed:\n{stderr[-3000:]}")
    summary = json.loads(stderr.strip().splitlines()[-1])
    warm = [s for s in samples if s[0] >= max(1, total // 10)] or samples[-1:]  # after 10% of the outputs
    def mib(role: int, pick) -> float:
        return round(pick(sample[role] for sample in warm) / 2 ** 20, 1)

    every = samples
    return {"wall_seconds": round(seconds, 2), "summary": summary,
            "texts_per_second_wall": round((summary["records"] + summary["errors"]) / seconds, 1),
            "driver_rss_peak_mib": round(max(s[1] for s in every) / 2 ** 20, 1),
            "worker_rss_peak_mib": round(max(s[2] for s in every) / 2 ** 20, 1),
            "driver_rss_at_10pct_mib": mib(1, next), "driver_rss_max_after_mib": mib(1, max),
            "worker_rss_at_10pct_mib": mib(2, next), "worker_rss_max_after_mib": mib(2, max),
            "driver_uss_at_10pct_mib": mib(3, next), "driver_uss_max_after_mib": mib(3, max),
            "worker_uss_at_10pct_mib": mib(4, next), "worker_uss_max_after_mib": mib(4, max), "samples": len(samples),
            "timeline": [{"seconds": round(s[5], 1), "outputs_done": s[0], "driver_rss_mib": s[1] >> 20,
                          "worker_rss_mib": s[2] >> 20, "driver_uss_mib": s[3] >> 20, "worker_uss_mib": s[4] >> 20}
                         for s in samples[:: max(1, len(samples) // 60)]]}


def two_nodes(model_dir: Path, parts: Path, output: Path, args: argparse.Namespace) -> dict:
    """The Ray job in this process on a two-node local cluster (each node: 2 logical CPUs, 1 actor)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before ray is imported: every address on loopback
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.ray_files import label_files

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        started = time.perf_counter()
        summary = label_files(model_dir, [str(parts)], str(output), num_actors=2, window=args.window,
                              batch_size=args.batch_size, threads_per_actor=args.actor_threads, progress=False)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"nodes": 2, "actors": 2, "seconds": round(seconds, 2), "summary": summary,
            "texts_per_second": round((summary["records"] + summary["errors"]) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--num-actors", type=int, default=1)
    parser.add_argument("--actor-threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--window", type=int, default=1024, help="rows per actor call (Ray) and per window (local)")
    parser.add_argument("--two-nodes", action="store_true", help="also run on a two-node local Ray cluster")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the Ray job, once at --texts, for its memory over a long run (sampled every 2 s)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    if not (args.model_dir / "meta.json").is_file():
        raise SystemExit(f"no model directory at {args.model_dir}: run `make demo` or give --model-dir")
    cli = [sys.executable, "-m", "toolkit.cli", "label", str(args.model_dir)]
    common = ["--batch-size", str(args.batch_size), "--window", str(args.window), "--quiet"]
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "texts": args.texts, "files": args.files, "model": str(args.model_dir),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}

    def ray_job(parts: Path, out: Path, every: float = 0.5) -> dict:
        return run_job([*cli, str(parts), str(out), "--engine", "ray", "--num-actors", str(args.num_actors),
                        "--actor-threads", str(args.actor_threads), *common],
                       lambda: len(list(out.glob("part-*.jsonl"))) if out.exists() else 0,
                       len(list(parts.iterdir())), every)

    def report() -> None:
        print(json.dumps(results, indent=1))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1) + "\n")

    if args.memory_only:
        with tempfile.TemporaryDirectory() as scratch:
            _, parts = write_inputs(Path(scratch), args.texts, args.files)
            results["ray_full"] = ray_job(parts, Path(scratch) / "ray_out", every=2.0)
        report()
        return
    sizes = {"full": args.texts, "quarter": args.texts // 4}
    full_parts = None
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for size, count in sizes.items():
            folder = scratch / size
            folder.mkdir()
            whole, parts = write_inputs(folder, count, args.files)
            full_parts = parts if size == "full" else full_parts
            results[f"bilstm_label_{size}"] = run_job(
                [*cli, str(whole), str(folder / "single.jsonl"), "--threads", "1", *common], lambda: 0, 1)
            results[f"ray_{size}"] = ray_job(parts, folder / "ray_out")
        if args.two_nodes:
            results["two_nodes"] = two_nodes(args.model_dir, full_parts, scratch / "two_nodes", args)
    extra = sizes["full"] - sizes["quarter"]
    for engine in ("bilstm_label", "ray"):  # the slope between the two sizes: start-up and model loading cancel
        seconds = results[f"{engine}_full"]["wall_seconds"] - results[f"{engine}_quarter"]["wall_seconds"]
        results[f"{engine}_marginal_texts_per_second"] = round(extra / seconds, 1) if seconds > 0 else None
        if seconds > 0:
            results[f"{engine}_fixed_seconds"] = round(results[f"{engine}_full"]["wall_seconds"]
                                                       - sizes["full"] * seconds / extra, 2)
    local_rate, ray_rate = results["bilstm_label_marginal_texts_per_second"], results["ray_marginal_texts_per_second"]
    if local_rate and ray_rate:
        results["ratio_marginal"] = round(ray_rate / local_rate, 3)
        results["ray_overhead_ms_per_batch"] = round(1000 * args.window * (1 / ray_rate - 1 / local_rate), 2)
    results["ratio_wall_full"] = round(results["ray_full"]["texts_per_second_wall"]
                                       / results["bilstm_label_full"]["texts_per_second_wall"], 3)
    report()


if __name__ == "__main__":
    main()
