"""Padding strategies side by side: why ``RecurrentEncoder`` defaults to ``padding="reverse"``.

    python benchmarks/encoder_speed.py [--threads 1] [--batch 64]

On the same length-sorted batches (IMDB-like lengths, 50-d inputs, 1-layer BiLSTM 128) it times, in one
process: the bare bidirectional ``nn.LSTM`` on padded input (fast but wrong for the backward direction of
shorter sequences), the bare ``nn.LSTM`` on packed input (exact), and ``RecurrentEncoder`` with
``padding="reverse"`` and ``padding="packed"`` (both exact) — inference and a training step (forward +
backward + Adam). Tokens/s count real (unpadded) tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolkit.nn import EncoderConfig, RecurrentEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lengths = torch.randint(40, args.max_len + 1, (args.batch * args.batches,)).sort(descending=True).values
    batches = [(torch.randn(args.batch, int(chunk[0]), 50), chunk) for chunk in lengths.split(args.batch)]
    tokens = int(lengths.sum())
    bare = torch.nn.LSTM(50, 128, bidirectional=True, batch_first=True)
    ours = {mode: RecurrentEncoder(50, EncoderConfig(hidden_size=128, padding=mode)) for mode in ("reverse", "packed")}
    variants = {
        "bare nn.LSTM, padded (inexact)": (bare, lambda m, x, n: m(x)[0]),
        "bare nn.LSTM, packed": (bare, lambda m, x, n: m(pack_padded_sequence(x, n, batch_first=True))[0].data),
        "RecurrentEncoder reverse": (ours["reverse"], lambda m, x, n: m(x, n).outputs),
        "RecurrentEncoder packed": (ours["packed"], lambda m, x, n: m(x, n).outputs),
    }

    def timed(function) -> float:
        function()
        samples = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            function()
            samples.append(time.perf_counter() - started)
        return tokens / statistics.median(samples)

    print(f"# batch {args.batch}, {args.batches} batches, lengths 40..{args.max_len} (sorted), 50→BiLSTM 128, "
          f"{args.threads} thread(s), median of {args.repeats}")
    print("| variant | inference tok/s | training tok/s |")
    print("|---|---|---|")
    for name, (module, run) in variants.items():
        def infer(module=module, run=run) -> None:
            module.eval()
            with torch.inference_mode():
                for x, n in batches:
                    run(module, x, n)

        optimizer = torch.optim.Adam(module.parameters(), 1e-3)

        def train(module=module, run=run, optimizer=optimizer) -> None:
            module.train()
            for x, n in batches:
                optimizer.zero_grad()
                run(module, x, n).sum().backward()
                optimizer.step()

        print(f"| {name} | {timed(infer):,.0f} | {timed(train):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
