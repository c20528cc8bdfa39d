"""Cell speed, side by side in one process: training and inference tokens/s of every encoder cell, the scripted
ones (TorchScript, plain Python and ``torch.compile`` loops) next to torch's fused ``nn.LSTM``/``nn.GRU``.

    OMP_NUM_THREADS=1 python benchmarks/cell_speed.py [--threads 1] [--repeats 5] [--backends script eager compile]
                                                      [--out docs/results/cell_speed.json]

One unidirectional layer, input 128, hidden 256, batch 32 × 50 time steps (a PTB-sized chunk), float32, through
the toolkit's RecurrentEncoder (what every task runs; the fused cells take their one-call path since every sequence
fills the batch). Training = forward + backward of ``outputs.sum()``; inference = eval mode under
``torch.inference_mode`` (not measured for ``compile``: the default ``auto`` compiles only training loops, and a
compile costs minutes per cell on this CPU). Each figure is the median of ``--repeats`` timings of 5 calls after
3 warm-up calls (TorchScript's profiling executor specialises on its first calls; ``torch.compile`` compiles
there), variants interleaved so that load changes hit them alike; the ratio column divides by nn.LSTM's figure
of the same round.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.nn import cells  # noqa: E402
from toolkit.nn.encoder import CELLS, FUSED_CELLS, EncoderConfig, RecurrentEncoder  # noqa: E402

INPUT, HIDDEN, BATCH, STEPS, CALLS, WARMUP = 128, 256, 32, 50, 5, 3


def timer(cell: str, backend: str, training: bool):
    """A closure timing CALLS calls of one encoder; the backend is set before every call (variants interleave)."""
    torch.manual_seed(0)
    encoder = RecurrentEncoder(INPUT, EncoderConfig(cell=cell, hidden_size=HIDDEN, bidirectional=False))
    encoder.train(training)
    x = torch.randn(BATCH, STEPS, INPUT, requires_grad=training)
    lengths = torch.full((BATCH,), STEPS)

    def call() -> None:
        if training:
            encoder.zero_grad(set_to_none=True)
            encoder(x, lengths).outputs.sum().backward()
        else:
            with torch.inference_mode():
                encoder(x, lengths)

    def run() -> float:
        cells.use_loop_backend(backend)
        started = time.perf_counter()
        for _ in range(CALLS):
            call()
        return CALLS * BATCH * STEPS / (time.perf_counter() - started)

    cells.use_loop_backend(backend)
    for _ in range(WARMUP):
        call()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["script", "compile", "eager"], choices=cells.LOOP_BACKENDS)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/cell_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    variants = []  # (cell, backend); fused cells have no loop backend
    for cell in args.cells:
        variants += [(cell, "fused")] if cell in FUSED_CELLS else [(cell, backend) for backend in args.backends]
    if ("lstm", "fused") not in variants:
        variants.insert(0, ("lstm", "fused"))
    runs = {}
    for variant in variants:
        for training in (True, False):
            backend = "script" if variant[1] == "fused" else variant[1]
            if backend == "compile" and not training:
                continue  # the "auto" default compiles only training loops (a compile per cell costs minutes)
            print(f"warming up {variant} {'training' if training else 'inference'}", file=sys.stderr, flush=True)
            runs[variant, training] = timer(variant[0], backend, training)
    samples: dict = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            samples[key].append(run())

    rows = []
    baseline = {training: statistics.median(samples[("lstm", "fused"), training]) for training in (True, False)}
    print("\n| cell | loop | training tok/s | × nn.LSTM | inference tok/s | × nn.LSTM |")
    print("|---|---|---:|---:|---:|---:|")
    for variant in variants:
        train, infer = (statistics.median(samples[variant, training]) if (variant, training) in samples
                        else math.nan for training in (True, False))
        rows.append({"cell": variant[0], "loop": variant[1], "train_tokens_per_s": round(train),
                     "train_spread": [round(min(samples[variant, True])), round(max(samples[variant, True]))],
                     "inference_tokens_per_s": None if math.isnan(infer) else round(infer),
                     "inference_spread": [round(min(samples[variant, False])), round(max(samples[variant, False]))]
                     if (variant, False) in samples else None,
                     "train_ratio": round(train / baseline[True], 3),
                     "inference_ratio": None if math.isnan(infer) else round(infer / baseline[False], 3)})
        inference = "–" if math.isnan(infer) else f"{infer:,.0f} | {infer / baseline[False]:.2f}"
        print(f"| {variant[0]} | {variant[1]} | {train:,.0f} | {train / baseline[True]:.2f} | "
              + (inference if not math.isnan(infer) else "– | –") + " |")
    report = {"date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
              "sizes": {"input": INPUT, "hidden": HIDDEN, "batch": BATCH, "steps": STEPS},
              "command": " ".join(["python", "benchmarks/cell_speed.py", *sys.argv[1:]]), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
