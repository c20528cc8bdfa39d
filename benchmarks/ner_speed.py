"""Tagger speed: the toolkit's BiLSTM-CRF beside the bare ``nn.LSTM`` and Flair, same sentences, one run.

    python benchmarks/ner_speed.py [--sentences 2048] [--threads 1,2] [--flair-python .flair-venv/bin/python]

All three use the same size: 100-d trainable word embeddings → 2-layer BiLSTM with 256 units per
direction → (CRF). For each thread setting a fresh subprocess (OMP_NUM_THREADS, OMP_WAIT_POLICY=PASSIVE)
times, on the first N CoNLL-2003 training sentences:

* ``bare``: ``nn.LSTM(100, 256, 2, bidirectional)`` forward over pre-built padded float batches (sorted by
  length, so as little padding as possible): the encoder alone, no embedding, CRF or decoding;
* ``toolkit``: ``TaggerPredictor.tag_tokens`` (featurise → embed → encode → CRF Viterbi → tags), fp32 and
  int8-quantized;
* ``flair``: ``SequenceTagger.predict`` (benchmarks/flair_runner.py in Flair's own venv);

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
    from toolkit.nn.tagger import TaggerConfig
    from toolkit.specs.tag import SPEC, TagConfig

    words = Vocab.build([[t.lower() for t in row["tokens"]] for row in rows])
    chars = Vocab.build([list(t) for row in rows for t in row["tokens"]])
    tags = tag_set(["LOC", "MISC", "ORG", "PER"], "iob2")
    config = TaggerConfig(embedding_dim=100, casing_dim=0, chars="none", word_dropout=0.0,
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

    from toolkit.data.tag import TaggingData
    from toolkit.nn.encoder import EncoderConfig
    from toolkit.nn.tagger import TaggerConfig
    from toolkit.tasks.base import OptimizerConfig
    from toolkit.tasks.tag import SequenceTagger

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "train.conll"
        path.write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in zip(r["tokens"], r["tags"], strict=True))
                                    for r in rows) + "\n", encoding="utf-8")
        data = TaggingData(str(path), str(path), scheme="iob1", train_scheme="iob2", batch_size=32)
        config = TaggerConfig(embedding_dim=100, casing_dim=0, chars="none", encoder=EncoderConfig(hidden_size=256,
                                                                                                   num_layers=2))
        model = SequenceTagger(config, OptimizerConfig(lr=1e-3), data.data_info)
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
                  "toolkit_int8": Predictor.load(model_dir, device="cpu", quantize=True)}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=2048)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flair-python", default=str(ROOT / ".flair-venv/bin/python"))
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.sentences, args.repeats, not args.no_train)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        rows = load_sentences(args.sentences)
        model_dir = make_model_dir(rows, Path(scratch) / "model")
        sentences_file = Path(scratch) / "sentences.json"
        sentences_file.write_text(json.dumps(rows))
        tokens = sum(len(r["tokens"]) for r in rows)
        print(f"# {args.sentences} CoNLL-2003 sentences, {tokens} tokens; median of {args.repeats}; "
              f"{os.cpu_count()} cpus; OMP_WAIT_POLICY=PASSIVE")
        for threads in args.threads.split(","):
            env = {**os.environ, "OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE"}
            command = [sys.executable, __file__, "--child", str(model_dir), "--sentences", str(args.sentences),
                       "--repeats", str(args.repeats)] + (["--no-train"] if args.no_train else [])
            ours = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                              .stdout.strip().splitlines()[-1])
            flair = None
            if Path(args.flair_python).exists():
                flair_command = [args.flair_python, str(ROOT / "benchmarks/flair_runner.py"), "--sentences",
                                 str(sentences_file), "--repeats", str(args.repeats)]
                flair_command += [] if args.no_train else ["--train"]
                done = subprocess.run(flair_command, env=env, capture_output=True, text=True)
                flair = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
                if flair is None:
                    print(f"# flair failed: {done.stderr[-500:]}")
            print(f"\n## {threads} thread(s)\n")
            print("| batch | bare nn.LSTM tok/s | toolkit tok/s | toolkit int8 tok/s | Flair tok/s | toolkit/bare "
                  "| toolkit/Flair |")
            print("|---|---|---|---|---|---|---|")
            for batch_size in BATCH_SIZES:
                row = ours["predict"][str(batch_size)]
                flair_speed = flair["predict"][str(batch_size)]["tokens_per_s"] if flair else float("nan")
                print(f"| {batch_size} | {row['bare']:,.0f} | {row['toolkit']:,.0f} | {row['toolkit_int8']:,.0f} | "
                      f"{flair_speed:,.0f} | {row['toolkit'] / row['bare']:.2f} | {row['toolkit'] / flair_speed:.2f} |")
            if not args.no_train:
                flair_train = flair["train_tokens_per_s"] if flair else float("nan")
                print(f"\ntraining, one epoch, batch 32: toolkit {ours['train_tokens_per_s']:,.0f} tok/s, Flair "
                      f"{flair_train:,.0f} tok/s, ratio {ours['train_tokens_per_s'] / flair_train:.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
