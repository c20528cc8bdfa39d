"""Predictor speed beside the bare ``torch.nn.LSTM`` forward, on the same batches, in the same process.

    python benchmarks/predict_speed.py [--model-dir DIR] [--texts N] [--batch-size 64]

For every thread setting (1 and 2 threads, OpenMP spin-waiting on and off) a fresh subprocess times:

* ``bare``: ``nn.LSTM`` of the model's size (bidirectional, same layers) over pre-built padded float
  batches, length-sorted exactly as the Predictor sorts them: the encoder alone, nothing else;
* ``predictor``: ``Predictor.predict(texts)``: tokenise → ids → embed → encode → pool → softmax;

and prints texts/s, tokens/s and the ratio predictor/bare (the target is ≥ 0.90 at batch 64). Without
``--model-dir`` a randomly initialised model of the IMDB config's size is used (weights do not change
speed).
"""

from __future__ import annotations

import argparse
import gzip
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
IMDB = ROOT.parent / "shared/data/imdb/train.jsonl.gz"
SAMPLE = ROOT / "samples/textcat/train.jsonl"
SETTINGS = [  # (threads, OMP_WAIT_POLICY)
    (1, "ACTIVE"), (2, "ACTIVE"), (1, "PASSIVE"), (2, "PASSIVE"),
]


def load_texts(count: int) -> list[str]:
    """The first ``count`` IMDB reviews (mixed pos/neg), or the bundled sample where IMDB is absent."""
    if IMDB.exists():
        with gzip.open(IMDB, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line)["text"] for line in handle]
        return (rows[: count // 2] + rows[-(count - count // 2):])[:count]
    rows = [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines()]
    return (rows * (count // len(rows) + 1))[:count]


def random_model_dir(texts: list[str], target: Path) -> Path:
    """A randomly initialised classifier directory with the textcat_imdb architecture."""
    import torch

    from toolkit.data.export import DataExport
    from toolkit.data.tokenize import Tokenizer, TokenizerSettings
    from toolkit.data.vocab import Vocab
    from toolkit.nn import ClassifyNetConfig, EncoderConfig
    from toolkit.specs.classify import SPEC, ClassifyConfig

    settings = TokenizerSettings(max_tokens=800)
    vocab = Vocab.build(Tokenizer(settings).tokenize_many(texts), max_size=50_000)
    config = ClassifyConfig(ClassifyNetConfig(embedding_dim=50, encoder=EncoderConfig(hidden_size=128),
                                             pooling="max+mean"), len(vocab), 2)
    torch.manual_seed(0)
    net = SPEC.build_net(config, ["neg", "pos"])
    return SPEC.save(target, config, DataExport(["neg", "pos"], settings.to_dict(), {"vocab.json": vocab.to_json()}),
                     net.state_dict())


def measure(model_dir: str, count: int, batch_size: int, repeats: int) -> dict:
    """Runs inside the subprocess: time bare LSTM and Predictor on the same batches."""
    import torch

    from toolkit.data.batching import sorted_batches
    from toolkit.predict import Predictor

    texts = load_texts(count)
    predictor = Predictor.load(model_dir, device="cpu")
    ids = predictor.encode(texts)
    lengths = [len(seq) for seq in ids]
    tokens = sum(lengths)
    encoder_config = predictor.net.config.encoder
    bare = torch.nn.LSTM(predictor.net.config.embedding_dim, encoder_config.hidden_size, encoder_config.num_layers,
                         bidirectional=encoder_config.bidirectional, batch_first=True).eval()
    batches = [
        torch.randn(len(batch), max(lengths[i] for i in batch), predictor.net.config.embedding_dim)
        for _, batch in sorted_batches(list(range(len(lengths))), lengths, batch_size)
    ]

    def time_bare() -> float:
        with torch.inference_mode():
            started = time.perf_counter()
            for batch in batches:
                bare(batch)
            return time.perf_counter() - started

    def time_predictor() -> float:
        started = time.perf_counter()
        predictor.predict(texts, batch_size=batch_size)
        return time.perf_counter() - started

    time_bare(), time_predictor()  # warm-up (allocator, oneDNN primitive cache)
    bare_times, predictor_times = [], []
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        bare_times.append(time_bare())
        predictor_times.append(time_predictor())
    bare_s, predictor_s = statistics.median(bare_times), statistics.median(predictor_times)
    return {"texts": len(texts), "tokens": tokens, "bare_tokens_per_s": tokens / bare_s,
            "predictor_tokens_per_s": tokens / predictor_s, "predictor_texts_per_s": len(texts) / predictor_s,
            "ratio": bare_s / predictor_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="classifier model directory (default: random IMDB-sized model)")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model_dir, args.texts, args.batch_size, args.repeats)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or str(random_model_dir(load_texts(args.texts), Path(scratch) / "model"))
        print(f"# {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}; "
              f"{args.texts} texts, batch {args.batch_size}, median of {args.repeats}; "
              f"model {args.model_dir or 'random'}")
        print(f"{'threads':>7} {'OMP_WAIT':>8} {'bare tok/s':>11} {'predict tok/s':>14} {'texts/s':>8} {'ratio':>6}")
        for threads, wait in SETTINGS:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": wait}
            command = [sys.executable, __file__, "--child", "--model-dir", model_dir, "--texts", str(args.texts),
                       "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
            result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{threads:>7} {wait:>8} {row['bare_tokens_per_s']:>11.0f} {row['predictor_tokens_per_s']:>14.0f} "
                  f"{row['predictor_texts_per_s']:>8.1f} {row['ratio']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
