"""Decoding speed of a translation model directory: greedy vs beam 5, batch 1 vs 64, sentences/s.

    python benchmarks/translate_speed.py MODEL_DIR [--data ../shared/data/multi30k/val.de.gz]
        [--sentences 500] [--threads 1] [--backends torch,onnx,onnx-int8] [--json results.json]

All four settings run in this one process on the same sentences, one after the other (after a warm-up),
so their ratios are comparable even on a busy machine; absolute numbers move with the machine's load.
Prints a Markdown table: sentences/s, output subwords/s and the speed relative to greedy at batch 64. With
``--backends``, every setting runs on each backend in turn (torch; ``onnx``: encoder.onnx + decoder_step.onnx on ONNX
Runtime, exported into a temporary copy when the directory has none; ``onnx-int8``), and the table adds the speed
relative to torch at the same setting and whether the translations are the same.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETTINGS = [(1, 64), (5, 64), (1, 1), (5, 1)]  # (beam size, batch size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/multi30k/val.de.gz"),
                        help="source sentences (a .de/.src file, plain or .gz, or JSONL with a source field)")
    parser.add_argument("--sentences", type=int, default=500, help="how many sentences to translate per setting")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--backends", default="torch", help="comma-separated: torch, onnx, onnx-int8")
    args = parser.parse_args(argv)
    if args.backends != "torch":
        return compare_backends(args)

    import torch

    from toolkit import Predictor
    from toolkit.data.bitext import read_bitext

    predictor = Predictor.load(args.model_dir, device="cpu", num_threads=args.threads)
    data = Path(args.data)
    if not data.exists():
        data = ROOT / "samples/translate/dev.de"
    sources = [pair.source for pair in read_bitext(data, predictor.source_lang, predictor.target_lang)]
    sources = (sources * (args.sentences // len(sources) + 1))[: args.sentences]
    predictor.predict(sources[:64], batch_size=64, beam_size=5)  # warm-up
    rows = []
    for beam, batch in SETTINGS:
        started = time.perf_counter()
        results = predictor.predict(sources, batch_size=batch, beam_size=beam)
        seconds = time.perf_counter() - started
        subwords = sum(len(predictor.target_tokenizer.encode([r.translation])[0]) for r in results)
        rows.append({"beam_size": beam, "batch_size": batch, "sentences": len(sources), "seconds": round(seconds, 2),
                     "sentences_per_s": round(len(sources) / seconds, 1), "subwords_per_s": round(subwords / seconds)})
    base = rows[0]["sentences_per_s"]
    print(f"model {args.model_dir}; {len(sources)} sentences from {data}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {platform.machine()}; {date.today().isoformat()}\n")
    print("| decoding | batch | sentences/s | output subwords/s | vs greedy@64 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        name = "greedy" if row["beam_size"] == 1 else f"beam {row['beam_size']}"
        print(f"| {name} | {row['batch_size']} | {row['sentences_per_s']} | {row['subwords_per_s']} | "
              f"{row['sentences_per_s'] / base:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model_dir": str(args.model_dir), "data": str(data),
                                               "threads": torch.get_num_threads(), "date": date.today().isoformat(),
                                               "rows": rows}, indent=2))
    return 0


def compare_backends(args: argparse.Namespace) -> int:
    """Every setting on every backend, interleaved, in this one process; ratios against torch."""
    import shutil
    import tempfile

    import torch

    from toolkit import Predictor
    from toolkit.data.bitext import read_bitext

    torch.set_num_threads(args.threads)
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(args.model_dir)
        meta = json.loads((model_dir / "meta.json").read_text())
        if any(b.startswith("onnx") for b in backends) and "onnx-int8" not in meta.get("backends", {}):
            from toolkit.onnx_export import export_onnx

            model_dir = Path(scratch) / "model"
            shutil.copytree(args.model_dir, model_dir)
            export_onnx(model_dir, int8=True)
        options = {"torch": {"device": "cpu", "num_threads": args.threads},
                   "onnx": {"backend": "onnx", "num_threads": args.threads},
                   "onnx-int8": {"backend": "onnx", "quantize": True, "num_threads": args.threads}}
        predictors = {name: Predictor.load(model_dir, **options[name]) for name in backends}
        torch_predictor = next(iter(predictors.values()))
        data = Path(args.data) if Path(args.data).exists() else ROOT / "samples/translate/dev.de"
        sources = [pair.source for pair in read_bitext(data, torch_predictor.source_lang,
                                                       torch_predictor.target_lang)]
        sources = (sources * (args.sentences // len(sources) + 1))[: args.sentences]
        for predictor in predictors.values():
            predictor.predict(sources[:64], batch_size=64, beam_size=5)  # warm-up
        rows = []
        for beam, batch in SETTINGS:
            outputs = {}
            for name, predictor in predictors.items():
                started = time.perf_counter()
                outputs[name] = [r.translation for r in predictor.predict(sources, batch_size=batch, beam_size=beam)]
                seconds = time.perf_counter() - started
                rows.append({"backend": name, "beam_size": beam, "batch_size": batch,
                             "sentences_per_s": round(len(sources) / seconds, 1)})
            reference = outputs[backends[0]]
            for row in rows[-len(backends):]:
                same = sum(a == b for a, b in zip(outputs[row["backend"]], reference, strict=True))
                row["same_translations"] = same
    print(f"model {args.model_dir}; {len(sources)} sentences from {data}; torch {torch.__version__}, "
          f"{args.threads} thread(s); {date.today().isoformat()}\n")
    print("| decoding | batch | " + " | ".join(f"{b} sent/s" for b in backends) + " | "
          + " | ".join(f"{b}/torch" for b in backends[1:]) + " | same translations as torch |")
    print("|---|---:|" + "---:|" * (2 * len(backends) - 1) + "---|")
    for start in range(0, len(rows), len(backends)):
        group = rows[start:start + len(backends)]
        name = "greedy" if group[0]["beam_size"] == 1 else f"beam {group[0]['beam_size']}"
        speeds = [row["sentences_per_s"] for row in group]
        same = ", ".join(f"{row['backend']} {row['same_translations']}/{len(sources)}" for row in group[1:])
        print(f"| {name} | {group[0]['batch_size']} | " + " | ".join(f"{v}" for v in speeds) + " | "
              + " | ".join(f"{v / speeds[0]:.2f}" for v in speeds[1:]) + f" | {same} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model_dir": str(args.model_dir), "threads": args.threads,
                                               "date": date.today().isoformat(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
