"""Tagger speed: the toolkit's BiLSTM-CRF beside the bare ``nn.LSTM`` and Flair, same sentences, one run.

    python benchmarks/ner_speed.py [--sentences 2048] [--threads 1,2] [--rounds 3] [--out F.json]

All three use the same size: 100-d trainable word embeddings → 2-layer BiLSTM with 256 units per
direction → (CRF). For each thread setting a fresh subprocess (OMP_NUM_THREADS, OMP_WAIT_POLICY=PASSIVE)
times, on the first N CoNLL-2003 training sentences:

* ``bare``: ``nn.LSTM(100, 256, 2, bidirectional)`` forward over pre-built padded float batches (sorted by
  length, so as little padding as possible): the encoder alone, no embedding, CRF or decoding;
* ``toolkit``: ``TagPredictor.tag_tokens`` (featurise → embed → encode → CRF Viterbi → tags), fp32 and
  int8-quantized (torch's eager dynamic quantization);
* ``onnx`` / ``onnx_int8``: the same predictor on the ONNX Runtime backend (``bilstm export --onnx --int8``: tag
  scores from ONNX Runtime, Viterbi in torch);
* ``flair``: ``TagModule.predict`` (benchmarks/flair_runner.py in Flair's own venv);

at batch 1/32/256 (batch 1 on the first 256 sentences), plus one training epoch (toolkit: Lightning, Adam,
batch 32; Flair: ModelTrainer, SGD, batch 32) in tokens/s. Ratios are within the same subprocess run.
Without weights the speed is the same, so randomly initialised models are used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONLL = ROOT.parent / "shared/data/conll2003/eng.train.gz"
SAMPLE = ROOT / "samples/ner/train.conll"
BATCH_SIZES = (1, 32, 256)


def load_sentences(count: int) -> list[dict]:
    from toolkit.data.conll import read_conll

    sentences = read_conll(CONLL if CONLL.exists() else SAMPLE)
    sentences = (sentences * (count // len(sentences) + 1))[:count]
    return [{"tokens": s.tokens, "tags": s.tags} for s in sentences]


def make_model_dir(rows: list[dict], target: Path) -> Path:
    import torch

    from toolkit.config import config_to_dict
    from toolkit.data.export import DataExport
    from toolkit.data.tag_features import FeatureSettings
    from toolkit.data.tagschemes import tag_set
    from toolkit.data.vocab import Vocab
    from toolkit.nn.encoder import EncoderConfig
    from toolkit.nn.tagger import TagNetConfig
    from toolkit.specs.tag import SPEC, TagConfig

    words = Vocab.build([[t.lower() for t in row["tokens"]] for row in rows])
    chars = Vocab.build([list(t) for row in rows for t in row["tokens"]])
    tags = tag_set(["LOC", "MISC", "ORG", "PER"], "iob2")
    config = TagNetConfig(embedding_dim=100, casing_dim=0, chars="none", word_dropout=0.0,
                          encoder=EncoderConfig(hidden_size=256, num_layers=2))
    torch.manual_seed(0)
    model_config = TagConfig(config, len(words), len(chars), "iob2", "iob1")
    net = SPEC.build_net(model_config, tags)
    data = DataExport(tags, config_to_dict(FeatureSettings()), {"vocab.json": words.to_json(),
                                                                "chars.json": chars.to_json()})
    return SPEC.save(target, model_config, data, net.state_dict())


def median_time(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def train_epoch_tokens_per_s(rows: list[dict]) -> float:
    """One Lightning epoch of the same-size tagger over ``rows`` (Adam, batch 32, CRF loss)."""
    import pytorch_lightning as pl

    from toolkit.data.tag import TagData
    from toolkit.nn.encoder import EncoderConfig
    from toolkit.nn.tagger import TagNetConfig
    from toolkit.tasks.base import OptimizerConfig
    from toolkit.tasks.tag import TagModule

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "train.conll"
        path.write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in zip(r["tokens"], r["tags"], strict=True))
                                    for r in rows) + "\n", encoding="utf-8")
        data = TagData(str(path), str(path), scheme="iob1", train_scheme="iob2", batch_size=32)
        config = TagNetConfig(embedding_dim=100, casing_dim=0, chars="none", encoder=EncoderConfig(hidden_size=256,
                                                                                                   num_layers=2))
        model = TagModule(config, OptimizerConfig(lr=1e-3), data.data_info)
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             num_sanity_val_steps=0)
        started = time.perf_counter()
        trainer.fit(model, datamodule=data)
        return sum(len(r["tokens"]) for r in rows) / (time.perf_counter() - started)


def measure(model_dir: str, count: int, repeats: int, train: bool) -> dict:
    """Runs in the subprocess: bare LSTM, toolkit fp32 and int8 at each batch size."""
    import torch

    from toolkit.predict import Predictor

    rows = load_sentences(count)
    sentences = [row["tokens"] for row in rows]
    predictors = {"toolkit": Predictor.load(model_dir, device="cpu"),
                  "toolkit_int8": Predictor.load(model_dir, device="cpu", quantize=True),
                  "onnx": Predictor.load(model_dir, backend="onnx"),
                  "onnx_int8": Predictor.load(model_dir, backend="onnx", quantize=True)}
    bare = torch.nn.LSTM(100, 256, 2, bidirectional=True, batch_first=True).eval()
    result = {"threads": torch.get_num_threads(), "predict": {}}
    for batch_size in BATCH_SIZES:
        subset = sentences if batch_size > 1 else sentences[:256]
        tokens = sum(map(len, subset))
        order = sorted(range(len(subset)), key=lambda i: -len(subset[i]))
        batches = [torch.randn(len(chunk), len(subset[chunk[0]]), 100)
                   for chunk in (order[s:s + batch_size] for s in range(0, len(order), batch_size))]

        def run_bare(batches=batches) -> None:
            with torch.inference_mode():
                for batch in batches:
                    bare(batch)

        row = {"bare": tokens / median_time(run_bare, repeats)}
        for name, predictor in predictors.items():
            row[name] = tokens / median_time(
                lambda p=predictor, s=subset, b=batch_size: p.tag_tokens(s, b, with_confidence=False), repeats)
        result["predict"][str(batch_size)] = row
    if train:
        result["train_tokens_per_s"] = train_epoch_tokens_per_s(rows)
    return result


BACKENDS = ("toolkit", "toolkit_int8", "onnx", "onnx_int8")


def spread(values: list[float]) -> str:
    """Median and range of a ratio over the rounds: ``1.23 (1.10–1.31)``."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=2048)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (the median is kept)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="fresh subprocesses per thread setting, alternating with Flair: ratios as median (range)")
    parser.add_argument("--flair-python", default=str(ROOT / ".flair-venv/bin/python"))
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--out", type=Path, help="also write every round's figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.sentences, args.repeats, not args.no_train)))
        return

    from toolkit.onnx_export import export_onnx

    record: dict = {"sentences": args.sentences, "rounds": args.rounds, "repeats": args.repeats, "threads": {}}
    with tempfile.TemporaryDirectory() as scratch:
        rows = load_sentences(args.sentences)
        model_dir = make_model_dir(rows, Path(scratch) / "model")
        export_onnx(model_dir, int8=True)
        sentences_file = Path(scratch) / "sentences.json"
        sentences_file.write_text(json.dumps(rows))
        tokens = sum(len(r["tokens"]) for r in rows)
        print(f"# {args.sentences} CoNLL-2003 sentences, {tokens} tokens; median of {args.repeats} timings; "
              f"{args.rounds} round(s); {os.cpu_count()} cpus; OMP_WAIT_POLICY=PASSIVE")
        for threads in args.threads.split(","):
            env = {**os.environ, "OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE"}
            rounds = []
            for _ in range(args.rounds):
                command = [sys.executable, __file__, "--child", str(model_dir), "--sentences", str(args.sentences),
                           "--repeats", str(args.repeats)] + (["--no-train"] if args.no_train else [])
                ours = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                                  .stdout.strip().splitlines()[-1])
                rounds.append({"toolkit": ours, "flair": run_flair(args, sentences_file, env)})
            record["threads"][threads] = rounds
            print_table(threads, rounds, not args.no_train)
            sys.stdout.flush()
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


def run_flair(args: argparse.Namespace, sentences_file: Path, env: dict) -> dict | None:
    if not Path(args.flair_python).exists():
        return None
    command = [args.flair_python, str(ROOT / "benchmarks/flair_runner.py"), "--sentences", str(sentences_file),
               "--repeats", str(args.repeats)] + ([] if args.no_train else ["--train"])
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"# flair failed: {done.stderr[-500:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(threads: str, rounds: list[dict], train: bool) -> None:
    """tokens/s of the last round; ratios (× bare nn.LSTM, × Flair) as median (range) over the rounds."""
    print(f"\n## {threads} thread(s)\n")
    print("| batch | bare nn.LSTM tok/s | torch | torch int8 | ONNX | ONNX int8 | Flair | best/bare | best/Flair "
          "| ONNX/bare | ONNX int8/bare | torch/Flair |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for batch_size in BATCH_SIZES:
        key = str(batch_size)
        last = rounds[-1]["toolkit"]["predict"][key]
        flair = [r["flair"]["predict"][key]["tokens_per_s"] if r["flair"] else float("nan") for r in rounds]
        ours = [r["toolkit"]["predict"][key] for r in rounds]
        best = [max(row[name] for name in BACKENDS) for row in ours]
        cells = [f"{last[name]:,.0f}" for name in ("bare", *BACKENDS)] + [f"{flair[-1]:,.0f}"]
        ratios = [spread([b / row["bare"] for b, row in zip(best, ours, strict=True)]),
                  spread([b / f for b, f in zip(best, flair, strict=True)]),
                  spread([row["onnx"] / row["bare"] for row in ours]),
                  spread([row["onnx_int8"] / row["bare"] for row in ours]),
                  spread([row["toolkit"] / f for row, f in zip(ours, flair, strict=True)])]
        print(f"| {batch_size} | " + " | ".join(cells + ratios) + " |")
    if train:
        for r in rounds:
            flair_train = r["flair"]["train_tokens_per_s"] if r["flair"] else float("nan")
            ours_train = r["toolkit"]["train_tokens_per_s"]
            print(f"\ntraining, one epoch, batch 32: toolkit {ours_train:,.0f} tok/s, Flair {flair_train:,.0f} tok/s, "
                  f"ratio {ours_train / flair_train:.2f}")


if __name__ == "__main__":
    main()
