"""Classifier backends side by side: bare ``nn.LSTM``, the toolkit on torch, on ONNX Runtime fp32 and int8.

    python benchmarks/onnx_speed.py [--model-dir DIR] [--texts 512] [--batch-size 64] [--repeats 5]
        [--out docs/results/onnx_speed.json]

For 1 and 2 threads, a fresh subprocess times on the same length-sorted batches of IMDB reviews:

* ``bare nn.LSTM``: the encoder alone (``nn.LSTM`` of the model's size over pre-built float batches): the baseline;
* ``torch net`` / ``onnx fp32 net`` / ``onnx int8 net``: the whole network (ids, lengths → logits), no tokenising;
* ``torch predict`` / ``onnx predict``: ``Predictor.predict(texts)``, tokenising included (the tokenizer's chunk
  memory warm after the warm-up pass); ``torch predict, cold``: the same with that memory emptied before each run.

Each figure is the median of ``--repeats`` interleaved timings, given as tokens/s and as a ratio to the bare LSTM
measured in the same process. Without ``--model-dir`` a randomly initialised model of configs/textcat_imdb.yaml's
size is exported first (weights do not change speed).
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
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predict_speed import load_texts, random_model_dir

VARIANTS = ("bare nn.LSTM", "torch net", "onnx fp32 net", "onnx int8 net", "torch predict", "torch predict, cold",
            "onnx predict")


def measure(model_dir: str, count: int, batch_size: int, repeats: int) -> dict:
    """Runs inside the subprocess (its thread count set by the parent): tokens/s of every variant."""
    import torch

    from toolkit.data.batching import pad_ids, sorted_batches
    from toolkit.predict import Predictor

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    texts = load_texts(count)
    torch_predictor = Predictor.load(model_dir, device="cpu")
    onnx_predictor = Predictor.load(model_dir, backend="onnx")
    int8_net = Predictor.load(model_dir, backend="onnx", quantize=True).net
    ids = torch_predictor.encode(texts)
    lengths = [len(seq) for seq in ids]
    tokens = sum(lengths)
    order = [batch for _, batch in sorted_batches(list(range(len(ids))), lengths, batch_size)]
    padded = [pad_ids([ids[k] for k in batch]) for batch in order]
    network = torch_predictor.net.config
    bare = torch.nn.LSTM(network.embedding_dim, network.encoder.hidden_size, network.encoder.num_layers,
                         bidirectional=network.encoder.bidirectional, batch_first=True).eval()
    floats = [torch.randn(len(batch), max(lengths[k] for k in batch), network.embedding_dim) for batch in order]

    def over_batches(run) -> float:
        with torch.inference_mode():
            started = time.perf_counter()
            run()
            return time.perf_counter() - started

    runs = {
        "bare nn.LSTM": lambda: [bare(batch) for batch in floats],
        "torch net": lambda: [torch_predictor.net(batch, size) for batch, size in padded],
        "onnx fp32 net": lambda: [onnx_predictor.net(batch, size) for batch, size in padded],
        "onnx int8 net": lambda: [int8_net(batch, size) for batch, size in padded],
        "torch predict": lambda: torch_predictor.predict(texts, batch_size=batch_size),
        # the tokenizer's chunk memory emptied first: texts never seen (the steady state of a service is between)
        "torch predict, cold": lambda: (torch_predictor.tokenizer._chunks.clear(),
                                        torch_predictor.predict(texts, batch_size=batch_size)),
        "onnx predict": lambda: onnx_predictor.predict(texts, batch_size=batch_size),
    }
    for run in runs.values():  # warm-up: allocators, oneDNN primitives, ONNX Runtime's first run
        over_batches(run)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits every variant alike
        for name, run in runs.items():
            times[name].append(over_batches(run))
    bare_s = statistics.median(times["bare nn.LSTM"])
    return {"texts": len(texts), "tokens": tokens, "rows": {
        name: {"tokens_per_s": round(tokens / statistics.median(values)), "min_s": round(min(values), 4),
               "max_s": round(max(values), 4), "ratio_to_bare": round(bare_s / statistics.median(values), 3)}
        for name, values in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="classifier model directory with an ONNX export (default: random)")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model_dir, args.texts, args.batch_size, args.repeats)))
        return
    from toolkit.onnx_export import export_onnx

    report = {"command": "python benchmarks/onnx_speed.py " + " ".join(sys.argv[1:]), "date": date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "batch_size": args.batch_size,
              "texts": args.texts, "threads": {}}
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or str(random_model_dir(load_texts(args.texts), Path(scratch) / "model"))
        if not args.model_dir:
            export_onnx(model_dir, int8=True)
        for threads in (1, 2):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
            command = [sys.executable, __file__, "--child", "--model-dir", model_dir, "--texts", str(args.texts),
                       "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
            result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            report["threads"][threads] = row
            print(f"\n{threads} thread(s), batch {args.batch_size}, {row['texts']} texts, {row['tokens']} tokens")
            print("| variant | tokens/s | × bare nn.LSTM |\n|---|---:|---:|")
            for name in VARIANTS:
                cells = row["rows"][name]
                print(f"| {name} | {cells['tokens_per_s']:,} | {cells['ratio_to_bare']:.2f} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
