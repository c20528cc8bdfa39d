"""What int8 costs in accuracy on a dev set: a trained model directory, torch fp32 vs ONNX fp32 vs ONNX int8.

    python benchmarks/int8_accuracy.py MODEL_DIR DEV_FILE [--out results.json]
    python benchmarks/int8_accuracy.py runs/textcat_imdb/model --imdb-dev   # the IMDB dev split, as training carves it
    python benchmarks/int8_accuracy.py runs/lm_imdb_long/model --lm-dev configs/lm_imdb_long.yaml  # the LM's dev lines

The model is copied to a temporary folder and exported there (``bilstm export --onnx --int8``); each backend
scores the same file with ``Predictor.evaluate`` (the numbers ``bilstm evaluate`` prints). ``--imdb-dev`` writes the
classifier's dev split of ../shared/data/imdb/train.jsonl.gz (dev_fraction 0.1, split_seed 1234, the shipped configs'
carve) to a temporary JSONL file first; ``--lm-dev CONFIG`` the dev lines a language model config carves from its
corpus (a language model's figure is the perplexity of that text read as one stream, ``bilstm evaluate``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HEADLINE = {"classify": "accuracy", "tag": "f1", "translate": "bleu", "lm": "perplexity"}


def imdb_dev(target: Path) -> Path:
    from toolkit.data.datamodule import carve_dev

    with gzip.open(ROOT.parent / "shared/data/imdb/train.jsonl.gz", "rt", encoding="utf-8") as lines:
        examples = [line for line in lines if line.strip()]
    _, dev = carve_dev(examples, 0.1, 1234)
    target.write_text("".join(dev), encoding="utf-8")
    return target


def lm_dev(config: Path, target: Path) -> Path:
    """The dev lines ``config``'s LMData carves (without tokenising), one per line."""
    import yaml

    from toolkit.data.lm import LMData

    settings = yaml.safe_load(config.read_text())["data"]["init_args"]
    _, dev = LMData(**settings).corpus()
    target.write_text("".join(" ".join(line.split()) + "\n" for line in dev), encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("dev_file", nargs="?")
    parser.add_argument("--imdb-dev", action="store_true")
    parser.add_argument("--lm-dev", type=Path, metavar="CONFIG")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from toolkit.onnx_export import export_onnx
    from toolkit.predict import Predictor

    with tempfile.TemporaryDirectory() as scratch:
        if args.imdb_dev:
            data = imdb_dev(Path(scratch) / "dev.jsonl")
        elif args.lm_dev:
            data = lm_dev(args.lm_dev, Path(scratch) / "dev.txt")
        else:
            data = Path(args.dev_file)
        model_dir = Path(scratch) / "model"
        shutil.copytree(args.model_dir, model_dir)
        export_onnx(model_dir, int8=True)
        rows = {}
        for name, options in (("torch fp32", {"device": "cpu"}), ("onnx fp32", {"backend": "onnx"}),
                              ("onnx int8", {"backend": "onnx", "quantize": True})):
            predictor = Predictor.load(model_dir, **options)
            started = time.perf_counter()
            rows[name] = predictor.evaluate(data)
            rows[name]["seconds"] = round(time.perf_counter() - started, 1)
        key = HEADLINE[predictor.task]
    described = "IMDB carve (2,500 reviews)" if args.imdb_dev else f"dev lines of {args.lm_dev}" if args.lm_dev \
        else args.dev_file
    print(f"model {args.model_dir}; dev {described}\n")
    print(f"| backend | {key} | Δ vs torch fp32 (points) | seconds |")
    print("|---|---:|---:|---:|")
    base = rows["torch fp32"][key]
    scale = 100 if key in ("accuracy", "f1") else 1
    for name, row in rows.items():
        print(f"| {name} | {row[key]:.4f} | {(row[key] - base) * scale:+.2f} | {row['seconds']} |")
    if args.out:
        args.out.write_text(json.dumps({"model_dir": args.model_dir, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
