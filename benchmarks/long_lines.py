"""Peak memory of `bilstm label` over very long lines against the same job over short lines, side by side.

    python benchmarks/long_lines.py [--lines 100] [--chars 120000] [--out docs/results/long_lines.json]

Inputs are real IMDB reviews (../shared/data/imdb/train.jsonl.gz): the long file holds ``--lines`` lines of
reviews joined until each line has ``--chars`` characters, the short file the same number of single reviews.
Models are trained here on the bundled samples (one epoch: memory depends on the architecture, not the
weights): the sample classifier, which reads whole texts (so long lines are cut: ``--truncate``), the same
classifier reading only its last 400 tokens (long lines are clipped losslessly: no flag needed), and the
sample BiLSTM-CRF tagger (``--truncate``). Each job runs in its own process; its peak RSS comes from
``wait4``'s resource usage. The table prints the ratio long/short per model.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMDB = ROOT.parent / "shared/data/imdb/train.jsonl.gz"


def train(config: str, folder: Path, *extra: str) -> Path:
    command = [sys.executable, "-m", "toolkit.cli", "fit", "--config", config, "--trainer.max_epochs", "1",
               "--trainer.default_root_dir", str(folder), "--trainer.enable_progress_bar", "false",
               "--trainer.accelerator", "cpu", *extra]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return folder / "model"


def label(model: Path, source: Path, output: Path, *flags: str) -> dict:
    """Run `bilstm label` in a child process; its peak RSS (MiB), wall time and summary."""
    command = [sys.executable, "-m", "toolkit.cli", "label", str(model), str(source), str(output), "--quiet", *flags]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    stderr = child.stderr.read().decode()
    if status != 0:
        raise RuntimeError(f"{command} failed:\n{stderr[-2000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(time.perf_counter() - started, 1),
            "summary": json.loads(stderr.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--chars", type=int, default=120_000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/long_lines.json")
    args = parser.parse_args()
    with gzip.open(IMDB, "rt", encoding="utf-8") as handle:
        reviews = [json.loads(line)["text"] for line, _ in zip(handle, range(20_000), strict=False)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        long_lines, position = [], 0
        for _ in range(args.lines):
            parts, size = [], 0
            while size < args.chars:
                parts.append(reviews[position % len(reviews)])
                size += len(parts[-1]) + 1
                position += 1
            long_lines.append(" ".join(parts)[: args.chars])
        (folder / "long.txt").write_text("\n".join(long_lines) + "\n", encoding="utf-8")
        (folder / "short.txt").write_text("\n".join(reviews[: args.lines]) + "\n", encoding="utf-8")
        models = {
            "classifier, reads whole texts (--truncate)": (train("configs/textcat_sample.yaml", folder / "tc"),
                                                           ["--truncate"]),
            "classifier, last 400 tokens (no flag)": (train("configs/textcat_sample.yaml", folder / "tc400",
                                                            "--data.init_args.max_tokens", "400",
                                                            "--data.init_args.truncate", "tail"), []),
            "BiLSTM-CRF tagger (--truncate)": (train("configs/ner_sample.yaml", folder / "ner"), ["--truncate"]),
        }
        rows = []
        for name, (model, flags) in models.items():
            short = label(model, folder / "short.txt", folder / "short.jsonl", *flags)
            long = label(model, folder / "long.txt", folder / "long.jsonl", *flags)
            truncated = sum(json.loads(line).get("input_truncated", False)
                            for line in (folder / "long.jsonl").read_text(encoding="utf-8").splitlines())
            rows.append({"model": name, "short": short, "long": long, "long_lines_truncated": truncated,
                         "rss_ratio": round(long["peak_rss_mib"] / short["peak_rss_mib"], 3)})
    print(f"{'model':46} {'short MiB':>10} {'long MiB':>9} {'ratio':>6} {'long s':>7} {'cut':>4}")
    for row in rows:
        print(f"{row['model']:46} {row['short']['peak_rss_mib']:10.1f} {row['long']['peak_rss_mib']:9.1f} "
              f"{row['rss_ratio']:6.2f} {row['long']['seconds']:7.1f} {row['long_lines_truncated']:4d}")
    result = {"command": "python benchmarks/long_lines.py " + " ".join(sys.argv[1:]), "lines": args.lines,
              "chars_per_long_line": args.chars, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
