"""Language-model speed, side by side in one process: training tokens/s of the toolkit's LMNet against a
bare ``nn.Embedding`` + ``nn.LSTM`` + tied linear + cross-entropy step of the same size, and generation tokens/s.

    OMP_NUM_THREADS=1 python benchmarks/lm_speed.py [--threads 1] [--repeats 5] [--out docs/results/lm_speed.json]

Sizes are configs/lm_ptb.yaml's (10k vocabulary, 400-d embeddings, 2 × 400 LSTM, batch 32 × 70 tokens, AdamW).
"toolkit, no dropout" is the like-for-like comparison (the bare loop has no regularisation); "toolkit, PTB
regularisation" adds the shipped config's locked dropouts, embedding dropout and DropConnect. Each figure is the
median of ``--repeats`` timings of 5 steps, variants interleaved; the spread (min–max) is printed beside it.
Generation: ``LMPredictor.generate`` of 100 tokens (no early stop) at batch 1 and 32, random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.data.export import DataExport  # noqa: E402
from toolkit.data.lm_text import LMTokenizer  # noqa: E402
from toolkit.data.vocab import LM_SPECIALS, Vocab  # noqa: E402
from toolkit.nn.encoder import EncoderConfig  # noqa: E402
from toolkit.nn.lm import LMNet, LMNetConfig  # noqa: E402
from toolkit.specs.lm import SPEC, LMConfig  # noqa: E402

VOCAB, EMBEDDING, HIDDEN, LAYERS, BATCH, BPTT, STEPS = 10_000, 400, 400, 2, 32, 70, 5


class BareLM(nn.Module):
    """The textbook loop: embedding, stacked nn.LSTM, tied output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBEDDING)
        self.lstm = nn.LSTM(EMBEDDING, HIDDEN, LAYERS, batch_first=True)
        self.bias = nn.Parameter(torch.zeros(VOCAB))

    def forward(self, ids, state):
        output, state = self.lstm(self.embed(ids), state)
        return F.linear(output, self.embed.weight, self.bias), state


def toolkit_net(regularised: bool) -> LMNet:
    dropout = {"input_dropout": 0.35, "output_dropout": 0.35, "embedding_dropout": 0.05} if regularised else {
        "input_dropout": 0.0, "output_dropout": 0.0, "embedding_dropout": 0.0}
    encoder = EncoderConfig(hidden_size=HIDDEN, num_layers=LAYERS, bidirectional=False, init="torch",
                            dropout=0.25 if regularised else 0.0, locked_dropout=True,
                            weight_drop=0.25 if regularised else 0.0)
    return LMNet(LMNetConfig(embedding_dim=EMBEDDING, encoder=encoder, **dropout), VOCAB)


def trainer(model: nn.Module, bare: bool):
    """A closure running STEPS training steps with the state carried (detached), as the LM task does."""
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    inputs = torch.randint(0, VOCAB, (BATCH, BPTT))
    targets = torch.randint(0, VOCAB, (BATCH, BPTT))
    model.train()

    def run() -> float:
        state = None
        started = time.perf_counter()
        for _ in range(STEPS):
            if bare:
                logits, state = model(inputs, state)
            else:
                output = model(inputs, state)
                logits, state = model.logits(output.hidden), output.state
            state = tuple(part.detach() for part in state)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return BATCH * BPTT * STEPS / (time.perf_counter() - started)

    return run


def generation_speed(repeats: int) -> dict:
    from toolkit import Predictor

    vocab = Vocab(list(LM_SPECIALS) + [f"w{i}" for i in range(VOCAB - 2)], LM_SPECIALS)
    config = LMConfig(toolkit_net(False).config, VOCAB)
    net = SPEC.build_net(config, None)
    with tempfile.TemporaryDirectory() as folder:
        data = DataExport(None, LMTokenizer().to_dict(), {"vocab.json": vocab.to_json()})
        SPEC.save(Path(folder) / "lm", config, data, net.state_dict())
        predictor = Predictor.load(Path(folder) / "lm", device="cpu")
        # no early stop: <eos> can never be drawn
        with torch.no_grad():
            predictor.net.output_bias[predictor.eos] = -1e9
        rows = {}
        for batch in (1, 32):
            rates = []
            for repeat in range(repeats):
                started = time.perf_counter()
                results = predictor.generate(["w1 w2 w3"] * batch, max_tokens=100, seed=repeat)
                rates.append(sum(len(r.tokens) for r in results) / (time.perf_counter() - started))
            rows[f"batch {batch}"] = {"tokens_per_s": round(statistics.median(rates)),
                                      "min": round(min(rates)), "max": round(max(rates))}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/lm_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = {"bare nn.LSTM": trainer(BareLM(), True), "toolkit, no dropout": trainer(toolkit_net(False), False),
                "toolkit, PTB regularisation": trainer(toolkit_net(True), False)}
    for run in variants.values():
        run()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():  # interleaved, so a slow moment hurts every variant alike
            rates[name].append(run())
    base = statistics.median(rates["bare nn.LSTM"])
    training = {name: {"tokens_per_s": round(statistics.median(values)), "min": round(min(values)),
                       "max": round(max(values)), "ratio_to_bare": round(statistics.median(values) / base, 3)}
                for name, values in rates.items()}
    for name, row in training.items():
        print(f"train  {name:30} {row['tokens_per_s']:7,} tokens/s  ({row['min']:,}–{row['max']:,})  "
              f"×{row['ratio_to_bare']:.2f} of bare")
    generation = generation_speed(args.repeats)
    for name, row in generation.items():
        print(f"generate {name:28} {row['tokens_per_s']:7,} tokens/s  ({row['min']:,}–{row['max']:,})")
    result = {"command": "python benchmarks/lm_speed.py " + " ".join(sys.argv[1:]), "threads": args.threads,
              "sizes": {"vocab": VOCAB, "embedding": EMBEDDING, "hidden": HIDDEN, "layers": LAYERS, "batch": BATCH,
                        "bptt": BPTT}, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "training": training,
              "generation": generation}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
