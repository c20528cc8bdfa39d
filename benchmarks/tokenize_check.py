"""The chunk-cached tokenizer against spaCy on whole texts: identical tokens on every IMDB and CoNLL text, and speed.

    OMP_NUM_THREADS=1 python benchmarks/tokenize_check.py [--limit N] [--out docs/results/tokenize_check.json]

`Tokenizer.tokenize_many` splits at whitespace and asks spaCy only about chunks it has not seen
(toolkit/data/tokenize.py); `Tokenizer.tokenize_with_spacy` runs whole texts through spaCy's tokenizer. Both run
over IMDB's 25k labelled and 50k unlabelled reviews (lower-cased, as the classifier reads them, and cased with the
classifier's tail-400 truncation) and over CoNLL-2003 train + dev sentences (tokens joined by spaces, cased, as raw
text reaches the tagger). Every text's tokens must be equal; tokens/s for spaCy, the chunk cache from empty (cold)
and a second pass (warm: a long-running service, or a batch job past its first texts). Before each timed pass the
objects already held are frozen out of the garbage collector (a full collection over millions of token strings
would otherwise dominate the timings of the later passes).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def corpora(limit: int | None) -> dict[str, list[str]]:
    from toolkit.data.conll import read_conll

    imdb = []
    for name in ("train", "unsup"):
        with gzip.open(DATA / "imdb" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as lines:
            imdb += [json.loads(line)["text"] for line in lines if line.strip()]
    conll = [" ".join(sentence.tokens) for split in ("train", "testa")
             for sentence in read_conll(DATA / "conll2003" / f"eng.{split}.gz")]
    return {"imdb": imdb[:limit], "conll": conll[:limit]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="texts per corpus (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from toolkit.data.tokenize import Tokenizer, TokenizerSettings

    texts = corpora(args.limit)
    cases = (("IMDB, lower-cased", "imdb", TokenizerSettings(lowercase=True)),
             ("IMDB, cased, last 400 tokens", "imdb", TokenizerSettings(lowercase=False, max_tokens=400,
                                                                        truncate="tail")),
             ("CoNLL-2003 train + dev, cased", "conll", TokenizerSettings(lowercase=False, html_breaks=False)))
    rows = []
    print("| corpus | texts | tokens | texts that differ | spaCy tokens/s | chunk cache, cold | warm |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, corpus, settings in cases:
        corpus_texts = texts[corpus]
        gc.collect()
        gc.freeze()  # what is already held (millions of token strings) is not rescanned by the timed passes
        started = time.perf_counter()
        slow = Tokenizer(settings).tokenize_with_spacy(corpus_texts)
        spacy_seconds = time.perf_counter() - started
        fast_tokenizer = Tokenizer(settings)
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        fast = fast_tokenizer.tokenize_many(corpus_texts)
        cold_seconds = time.perf_counter() - started
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        fast_tokenizer.tokenize_many(corpus_texts)
        warm_seconds = time.perf_counter() - started
        differ = [index for index, (a, b) in enumerate(zip(slow, fast, strict=True)) if a != b]
        tokens = sum(map(len, slow))
        row = {"corpus": label, "texts": len(corpus_texts), "tokens": tokens, "differ": len(differ),
               "first_differing": differ[:5], "spacy_tokens_per_s": round(tokens / spacy_seconds),
               "cold_tokens_per_s": round(tokens / cold_seconds), "warm_tokens_per_s": round(tokens / warm_seconds)}
        rows.append(row)
        print(f"| {label} | {len(corpus_texts):,} | {tokens:,} | {len(differ)} | {row['spacy_tokens_per_s']:,} | "
              f"{row['cold_tokens_per_s']:,} | {row['warm_tokens_per_s']:,} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    if any(row["differ"] for row in rows):
        sys.exit("the chunk-cached tokens differ from spaCy's on some texts")


if __name__ == "__main__":
    main()
