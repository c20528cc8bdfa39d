"""Jozefowicz et al. (2015)'s cell comparison, rerun at a cost this CPU affords: every cell on Arith., XML and PTB.

    OMP_NUM_THREADS=1 python benchmarks/cell_comparison.py [--jobs 2] [--budget 600000] [--tasks arith xml ptb]
        [--lrs 0.001 0.003 0.01] [--seeds 3] [--log docs/results/cell_comparison_runs.jsonl]

Every cell has the same size (one unidirectional layer, ``--hidden`` units, 32-d character embeddings) and the same
*token budget* (``--budget`` training characters: wall-clock would favour the fast cells). Per task and cell, the
learning rates ``--lrs`` (AdamW, cosine decay to 0, gradient norm clipped at 1) are tried with seed 0 and the best on
a validation set is rerun with seeds 1…``--seeds``-1; the table gives mean ± sd over the seeds on a separate test set
(both sets generated with fixed seeds, never seen in training). PTB: ``bilstm fit --config configs/lm_ptb_cells.yaml``
per cell (a fixed number of steps, one seed), scored by validation perplexity.

Each finished run is appended to ``--log`` (JSON lines), and a rerun skips the runs already there, so the table can
be built in pieces and survives interruption. The summary goes to ``--out`` and is printed as markdown.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from synthetic_tasks import VOCAB_SIZE, collate, make_examples  # noqa: E402

from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder  # noqa: E402

ROWS = [  # (the notes' row name, encoder cell, forget-gate bias)
    ("Tanh", "rnn_tanh", 0.0), ("LSTM", "lstm", 0.0), ("LSTM-f", "lstm_f", 0.0), ("LSTM-i", "lstm_i", 0.0),
    ("LSTM-o", "lstm_o", 0.0), ("LSTM-b", "lstm", 1.0), ("GRU", "gru", 0.0), ("MUT1", "mut1", 0.0),
    ("MUT2", "mut2", 0.0), ("MUT3", "mut3", 0.0), ("SRU", "sru", 0.0),
]
NOTES = {  # Jozefowicz et al. as printed in the notes: Arith. acc, XML acc, PTB with dropout (perplexity)
    "Tanh": (0.29493, 0.32050, 97.7), "LSTM": (0.89228, 0.42470, 81.4), "LSTM-f": (0.29292, 0.23356, 100.8),
    "LSTM-i": (0.75109, 0.41371, 85.1), "LSTM-o": (0.86747, 0.42117, 82.3), "LSTM-b": (0.90163, 0.44434, 79.83),
    "GRU": (0.89565, 0.45963, 91.7), "MUT1": (0.92135, 0.47483, 94.6), "MUT2": (0.89735, 0.47324, 90.2),
    "MUT3": (0.90728, 0.46478, 89.47), "SRU": (None, None, None),
}
BATCH, EMBEDDING, EVAL_SIZE = 64, 32, 2000
VALIDATION_SEED, TEST_SEED = 10_001, 10_002


class CharModel(nn.Module):
    """Characters ``[B, T]`` → embeddings → one recurrent layer → logits ``[B, T, vocab]``."""

    def __init__(self, cell: str, forget_bias: float, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, EMBEDDING, padding_idx=0)
        self.encoder = RecurrentEncoder(EMBEDDING, EncoderConfig(cell=cell, hidden_size=hidden, bidirectional=False,
                                                                 forget_bias=forget_bias))
        self.output = nn.Linear(hidden, VOCAB_SIZE)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output(self.encoder(self.embed(inputs), lengths).outputs)


def evaluate(model: CharModel, task: str, examples: list) -> dict:
    """Arith: share of problems solved and of result characters right; XML: next-character accuracy."""
    model.eval()
    solved = right = scored_total = 0
    with torch.inference_mode():
        for start in range(0, len(examples), 250):
            inputs, targets, scored, lengths = collate(examples[start : start + 250])
            correct = (model(inputs, lengths).argmax(-1) == targets) & scored
            right += int(correct.sum())
            scored_total += int(scored.sum())
            solved += int((correct | ~scored).all(1).sum())
    model.train()
    if task == "arith":
        return {"accuracy": solved / len(examples), "char_accuracy": right / scored_total}
    return {"accuracy": right / scored_total}


def train_synthetic(task: str, row: str, lr: float, seed: int, budget: int, hidden: int) -> dict:
    """One run: ``budget`` training characters of freshly generated sequences; validation and test scores."""
    torch.set_num_threads(1)
    _, cell, forget_bias = next(r for r in ROWS if r[0] == row)
    torch.manual_seed(seed)
    model = CharModel(cell, forget_bias, hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    validation = make_examples(task, EVAL_SIZE, VALIDATION_SEED)
    test = make_examples(task, EVAL_SIZE, TEST_SEED)
    stream = make_examples(task, budget // 8, 1000 + seed)  # more than enough sequences (each is ≥ 8 characters)
    steps_estimate = budget / (BATCH * statistics.mean(len(ids) for ids, _ in stream[:500]))
    seen = step = 0
    started = time.perf_counter()
    while seen < budget:
        inputs, targets, scored, lengths = collate(stream[step * BATCH : (step + 1) * BATCH])
        for group in optimizer.param_groups:  # cosine decay to 0 over the budget
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps_estimate)))
        logits = model(inputs, lengths)
        loss = F.cross_entropy(logits[scored], targets[scored])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seen += int(lengths.sum())
        step += 1
    seconds = time.perf_counter() - started
    return {"task": task, "row": row, "cell": cell, "forget_bias": forget_bias, "lr": lr, "seed": seed,
            "budget": budget, "hidden": hidden, "steps": step, "train_seconds": round(seconds, 1),
            "final_loss": round(float(loss), 4), "validation": evaluate(model, task, validation),
            "test": evaluate(model, task, test)}


def train_ptb(row: str, run_root: Path) -> dict:
    """``bilstm fit --config configs/lm_ptb_cells.yaml`` with this row's cell; the last validation perplexity."""
    _, cell, forget_bias = next(r for r in ROWS if r[0] == row)
    run_dir = run_root / f"ptb_{row}"
    option = "--model.init_args.network.encoder"
    command = [sys.executable, "-m", "toolkit.cli", "fit", "--config", "configs/lm_ptb_cells.yaml",
               f"{option}.cell", cell, f"{option}.forget_bias", str(forget_bias),
               "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
               "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
               "--trainer.logger.init_args.save_dir", str(run_dir)]
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"PTB run for {row} failed:\n{result.stderr[-3000:]}")
    with open(next(run_dir.glob("lightning_logs/version_*/metrics.csv")), newline="") as handle:
        curve = [float(line["val_ppl"]) for line in csv.DictReader(handle) if line.get("val_ppl")]
    return {"task": "ptb", "row": row, "cell": cell, "forget_bias": forget_bias, "seed": 42,
            "train_seconds": round(time.perf_counter() - started, 1), "val_ppl_per_epoch": curve,
            "test": {"perplexity": curve[-1]}, "command": " ".join(command[1:])}


def _key(run: dict) -> tuple:
    return run["task"], run["row"], run.get("lr"), run["seed"]


def _run(job: tuple) -> dict:
    kind, arguments = job
    return train_ptb(*arguments) if kind == "ptb" else train_synthetic(*arguments)


def run_jobs(jobs: list[tuple], log: Path, done: dict, workers: int) -> None:
    """Run the jobs not yet in ``done`` (``workers`` processes, one thread each), appending each result to ``log``."""
    pending = [job for job in jobs if job[2] not in done]
    with ProcessPoolExecutor(workers) as pool:
        for result in pool.map(_run, [job[:2] for job in pending]):
            done[_key(result)] = result
            with log.open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            score = result["test"].get("accuracy", result["test"].get("perplexity"))
            print(f"{result['task']:5} {result['row']:7} lr={result.get('lr')} seed={result['seed']}: "
                  f"test {score:.4f} ({result['train_seconds']:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["arith", "xml", "ptb"], choices=["arith", "xml", "ptb"])
    parser.add_argument("--rows", nargs="+", default=[row for row, _, _ in ROWS])
    parser.add_argument("--budget", type=int, default=600_000, help="training characters per run")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--log", type=Path, default=ROOT / "docs/results/cell_comparison_runs.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/cell_comparison.json")
    parser.add_argument("--summary-only", action="store_true", help="run nothing: the table of what is logged")
    args = parser.parse_args()
    done = {}
    if args.log.exists():
        for line in args.log.read_text().splitlines():
            run = json.loads(line)
            if run["task"] == "ptb" or (run["budget"], run["hidden"]) == (args.budget, args.hidden):
                done[_key(run)] = run  # runs of another budget or size are not this table's
    started = time.perf_counter()
    synthetic = [task for task in args.tasks if task != "ptb"]
    sweep = [("synthetic", (task, row, lr, 0, args.budget, args.hidden), (task, row, lr, 0))
             for task in synthetic for row in args.rows for lr in args.lrs]
    if not args.summary_only:
        run_jobs(sweep, args.log, done, args.jobs)
    best = {}
    for task in synthetic:
        for row in args.rows:
            tried = [done[task, row, lr, 0] for lr in args.lrs if (task, row, lr, 0) in done]
            if tried:
                best[task, row] = max(tried, key=lambda run: run["validation"]["accuracy"])["lr"]
    repeats = [("synthetic", (task, row, best[task, row], seed, args.budget, args.hidden),
                (task, row, best[task, row], seed)) for task in synthetic for row in args.rows
               for seed in range(1, args.seeds) if (task, row) in best]
    if not args.summary_only:
        run_jobs(repeats, args.log, done, args.jobs)
    if "ptb" in args.tasks and not args.summary_only:
        run_jobs([("ptb", (row, ROOT / "runs/cell_comparison"), ("ptb", row, None, 42)) for row in args.rows],
                 args.log, done, args.jobs)
    summarise(args, done, best, time.perf_counter() - started)


def _score(entry: dict) -> str:
    """``mean ± sd (n)``; a single seed has no spread."""
    spread = f" ± {entry['sd']:.3f}" if entry["sd"] is not None else ""
    return f"{entry['mean']:.3f}{spread} ({entry['seeds']})"


def summarise(args: argparse.Namespace, done: dict, best: dict, seconds: float) -> None:
    """Mean ± sd per task and row beside the notes' figures; markdown to stdout, JSON to ``args.out``."""
    table = []
    for row in args.rows:
        entry = {"row": row, "notes": dict(zip(("arith", "xml", "ptb_ppl"), NOTES[row], strict=True))}
        for task in ("arith", "xml"):
            if (task, row) in best:
                # every seed logged so far (a table built in pieces may have fewer than --seeds for some rows)
                scores = [done[task, row, best[task, row], seed]["test"]["accuracy"] for seed in range(args.seeds)
                          if (task, row, best[task, row], seed) in done]
                entry[task] = {"lr": best[task, row], "mean": statistics.mean(scores), "scores": scores,
                               "seeds": len(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else None}
        if ("ptb", row, None, 42) in done:
            entry["ptb_ppl"] = done["ptb", row, None, 42]["test"]["perplexity"]
        table.append(entry)
    cpu_seconds = sum(run["train_seconds"] for run in done.values())
    print("\n| cell | Arith. (ours) | Arith. (notes) | XML (ours) | XML (notes) | PTB ppl (ours) | PTB ppl (notes) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for entry in table:
        cells = []
        for task in ("arith", "xml"):
            cells += [_score(entry[task]) if task in entry else "–",
                      f"{entry['notes'][task]:.3f}" if entry["notes"][task] is not None else "–"]
        cells += [f"{entry['ptb_ppl']:.1f}" if "ptb_ppl" in entry else "–",
                  f"{entry['notes']['ptb_ppl']}" if entry["notes"]["ptb_ppl"] is not None else "–"]
        print(f"| {entry['row']} | " + " | ".join(cells) + " |")
    print("\nEvery learning rate tried (seed 0; validation accuracy picks the rate, * = picked):\n")
    print("| task | cell | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + " |")
    print("|---|---|" + "---:|" * len(args.lrs))
    for task in ("arith", "xml"):
        for row in args.rows:
            if (task, row) in best:
                tried = [done[task, row, lr, 0]["validation"]["accuracy"] if (task, row, lr, 0) in done else None
                         for lr in args.lrs]
                marks = ["*" if lr == best[task, row] else "" for lr in args.lrs]
                print(f"| {task} | {row} | " + " | ".join("–" if v is None else f"{v:.4f}{m}"
                                                         for v, m in zip(tried, marks, strict=True)) + " |")
    print(f"\ntraining CPU time of every logged run: {cpu_seconds / 3600:.2f} h; "
          f"this invocation: {seconds / 60:.0f} min")
    report = {"date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__,
              "command": " ".join(["python", "benchmarks/cell_comparison.py", *sys.argv[1:]]),
              "budget": args.budget, "hidden": args.hidden, "lrs": args.lrs, "seeds": args.seeds,
              "cpu_hours_all_runs": round(cpu_seconds / 3600, 2), "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
