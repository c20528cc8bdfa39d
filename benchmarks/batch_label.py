"""Batch labelling job vs the in-process Predictor (throughput), and the job's memory over a long input.

    OMP_NUM_THREADS=1 python benchmarks/batch_label.py [--model-dir DIR] [--texts 20000] [--repeats 3]
        [--rss-texts 1000000] [--leak-texts 100000] [--batch-size 64] [--window 4096]

1. Throughput, in one process, alternating runs on the same texts: ``Predictor.predict(texts)`` on a list in
   memory vs ``label_file`` (read the .txt file, window, predict, serialise JSONL, fsync per window, rename).
   The job's time excludes loading the model (it is constant). Prints the median texts/s and the ratio.
2. RSS of a real ``bilstm label`` subprocess over ``--rss-texts`` short texts, sampled every 0.5 s next to
   the records committed so far: the RSS once 10% of the texts are done (warm) vs the maximum after that.
3. For contrast (why the job uses a spaCy memory zone per window, spaCy #11596): a fresh process calling
   ``Predictor.predict`` window after window over ``--leak-texts`` texts, RSS at 10% vs at the end.

Every text is a short review sentence from the bundled sample plus a unique id token (``#123456``): ids,
numbers and URLs are what make a tokenizer's string store grow in real jobs. Without ``--model-dir`` the
bundled sample classifier (``runs/textcat_sample/model``, from ``make demo``) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "samples/textcat/train.jsonl"
DEFAULT_MODEL = ROOT / "runs/textcat_sample/model"

LEAK_PROBE = """
import itertools, json, sys, psutil
from toolkit import Predictor
model, path, count, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
predictor = Predictor.load(model, device="cpu")
with open(path, encoding="utf-8") as handle:
    texts = [line.rstrip("\\n") for line in itertools.islice(handle, count)]
process, rows = psutil.Process(), []
for start in range(0, count, window):
    predictor.predict(texts[start:start + window])
    rows.append((start + window, process.memory_info().rss))
print(json.dumps(rows))
"""


def write_texts(path: Path, count: int, first_id: int = 0) -> None:
    """``count`` short texts, one per line, streamed to disk (never all in memory)."""
    sentences = [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines()]
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            handle.write(f"{sentences[i % len(sentences)]} #{first_id + i}\n")


def throughput(model_dir: Path, count: int, repeats: int, batch_size: int, window: int) -> dict:
    """Median texts/s of Predictor.predict and of label_file on the same texts, runs interleaved.

    Each repeat labels new texts (new ids): the predictor's spaCy cache would otherwise hold every token of
    the earlier repeats and tokenise from memory, which no real job does.
    """
    from pipelines.label import label_file
    from toolkit import Predictor

    predictor = Predictor.load(model_dir, device="cpu")
    predictor_rates, job_rates = [], []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "texts.txt"
        write_texts(path, 512, first_id=-512)
        predictor.predict(path.read_text(encoding="utf-8").splitlines(), batch_size)  # warm-up
        for repeat in range(repeats):
            write_texts(path, count, first_id=repeat * count)
            texts = path.read_text(encoding="utf-8").splitlines()
            started = time.perf_counter()
            predictor.predict(texts, batch_size)
            predictor_rates.append(len(texts) / (time.perf_counter() - started))
            result = label_file(model_dir, path, Path(scratch) / "out.jsonl", batch_size=batch_size, window=window,
                                progress=False, device="cpu", restart=True)
            job_rates.append(result["records"] / result["seconds"])
    predictor_rate, job_rate = statistics.median(predictor_rates), statistics.median(job_rates)
    return {"texts": count, "predictor": predictor_rate, "job": job_rate, "ratio": job_rate / predictor_rate,
            "predictor_runs": [round(r) for r in predictor_rates], "job_runs": [round(r) for r in job_rates]}


def job_rss(model_dir: Path, path: Path, count: int, batch_size: int, window: int) -> dict:
    """Run ``bilstm label`` over the file and sample its RSS against the records committed."""
    import psutil

    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "out.jsonl"
        command = [sys.executable, "-m", "toolkit.cli", "label", str(model_dir), str(path), str(output), "--quiet",
                   "--batch-size", str(batch_size), "--window", str(window), "--device", "cpu"]
        started = time.perf_counter()
        job = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        process, samples = psutil.Process(job.pid), []
        while job.poll() is None:
            try:
                records = json.loads(Path(f"{output}.progress").read_text())["records"]
                samples.append((records, process.memory_info().rss))
            except (OSError, ValueError, psutil.Error):
                pass
            time.sleep(0.5)
        stderr = job.stderr.read()
        seconds = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"bilstm label failed:\n{stderr[-3000:]}")
    result = json.loads(stderr.strip().splitlines()[-1])
    warm = [rss for records, rss in samples if records >= count // 10]
    return {"texts": count, "records": result["records"], "wall_seconds": seconds,
            "job_texts_per_second": result["texts_per_second"], "rss_warm_mib": warm[0] / 2**20,
            "rss_max_after_warm_mib": max(warm) / 2**20, "rss_last_mib": warm[-1] / 2**20,
            "growth": max(warm) / warm[0] - 1, "samples": len(samples)}


def predictor_rss(model_dir: Path, path: Path, count: int, window: int) -> dict:
    """RSS of a plain Predictor loop (no memory zone) over the same kind of texts, in a fresh process."""
    output = subprocess.run([sys.executable, "-c", LEAK_PROBE, str(model_dir), str(path), str(count), str(window)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            check=True).stdout
    rows = json.loads(output.strip().splitlines()[-1])  # [texts done, rss] pairs printed by the probe
    warm = [rss for done, rss in rows if done >= count // 10]
    return {"texts": count, "rss_warm_mib": warm[0] / 2**20, "rss_last_mib": warm[-1] / 2**20,
            "growth": warm[-1] / warm[0] - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--texts", type=int, default=20_000, help="texts for the throughput comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-texts", type=int, default=1_000_000, help="texts for the job's RSS run (0: skip)")
    parser.add_argument("--leak-texts", type=int, default=100_000, help="texts for the Predictor-loop RSS (0: skip)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--window", type=int, default=4096)
    args = parser.parse_args()
    if not (args.model_dir / "meta.json").is_file():
        raise SystemExit(f"{args.model_dir} is not a model directory; run `make demo` or pass --model-dir")
    import torch

    print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f} | torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} | model {args.model_dir}")
    with tempfile.TemporaryDirectory() as scratch:
        result = throughput(args.model_dir, args.texts, args.repeats, args.batch_size, args.window)
        print("\n| texts | Predictor.predict texts/s | label_file texts/s | ratio | runs (predictor / job) |")
        print("|---|---|---|---|---|")
        print(f"| {result['texts']:,} | {result['predictor']:.0f} | {result['job']:.0f} | {result['ratio']:.2f} | "
              f"{result['predictor_runs']} / {result['job_runs']} |", flush=True)
        if args.leak_texts or args.rss_texts:
            big = Path(scratch) / "many.txt"
            write_texts(big, max(args.rss_texts, args.leak_texts))
            print("\n| run | texts | RSS at 10% (MiB) | max RSS after (MiB) | RSS at end (MiB) | growth | texts/s |")
            print("|---|---|---|---|---|---|---|")
        if args.leak_texts:
            leak = predictor_rss(args.model_dir, big, args.leak_texts, args.window)
            print(f"| Predictor.predict loop, no memory zone | {leak['texts']:,} | {leak['rss_warm_mib']:.0f} | - | "
                  f"{leak['rss_last_mib']:.0f} | {leak['growth']:+.1%} | - |", flush=True)
        if args.rss_texts:
            job = job_rss(args.model_dir, big, args.rss_texts, args.batch_size, args.window)
            print(f"| bilstm label | {job['records']:,} | {job['rss_warm_mib']:.0f} | "
                  f"{job['rss_max_after_warm_mib']:.0f} | {job['rss_last_mib']:.0f} | {job['growth']:+.1%} | "
                  f"{job['job_texts_per_second']:.0f} (wall {job['wall_seconds']:.0f} s) |", flush=True)


if __name__ == "__main__":
    main()
