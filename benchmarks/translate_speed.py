"""Decoding speed of a translation model directory: greedy vs beam 5, batch 1 vs 64, sentences/s.

    python benchmarks/translate_speed.py MODEL_DIR [--data ../shared/data/multi30k/val.de.gz]
        [--sentences 500] [--threads 1] [--json results.json]

All four settings run in this one process on the same sentences, one after the other (after a warm-up),
so their ratios are comparable even on a busy machine; absolute numbers move with the machine's load.
Prints a Markdown table: sentences/s, output subwords/s and the speed relative to greedy at batch 64.
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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
