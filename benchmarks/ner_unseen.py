"""Where do taggers differ: entity F1 on the dev set, split into entities seen and unseen in training.

An entity of the dev file is *seen* when the same token sequence with the same type is an entity somewhere in the
training file, *unseen* otherwise (Augenstein et al. 2017). A dev figure overstates what a tagger does on new text
mostly through the seen ones; LM features (TagLM) should help on the unseen ones. Per group: recall of the gold
entities, precision of the predicted entities (a prediction belongs to the group of its own text), and their F1.

    python benchmarks/ner_unseen.py runs/ner_conll03_nopretrain/model runs/ner_conll03_lm/model \
        --train ../shared/data/conll2003/eng.train.gz --dev ../shared/data/conll2003/eng.testa.gz \
        --out docs/results/ner_unseen.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from toolkit import Predictor
from toolkit.artifact import write_file_atomically
from toolkit.data.conll import read_conll
from toolkit.data.tagschemes import detect_scheme, spans_from_tags

Entity = tuple[int, int, int, str]
"""(sentence, start, end, type)."""


def entities(tag_lists: Sequence[Sequence[str]], scheme: str) -> set[Entity]:
    return {(row, start, end, kind) for row, tags in enumerate(tag_lists)
            for start, end, kind in spans_from_tags(tags, scheme)}


def scores(gold: set[Entity], predicted: set[Entity]) -> dict[str, float | int]:
    correct = len(gold & predicted)
    precision = correct / len(predicted) if predicted else 0.0
    recall = correct / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"gold": len(gold), "predicted": len(predicted), "correct": correct, "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="tagger model directories")
    parser.add_argument("--train", required=True, help="the training file the taggers were trained on")
    parser.add_argument("--dev", required=True, help="the labelled dev file")
    parser.add_argument("--out", help="JSON file for the table")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).resolve() in {Path(args.train).resolve(), Path(args.dev).resolve()}:
        parser.error(f"--out {args.out} is one of the input files; give a new JSON file name")

    train = read_conll(args.train)
    scheme = detect_scheme([sentence.tags for sentence in train])
    known = {(tuple(sentence.tokens[start:end]), kind) for sentence in train
             for start, end, kind in spans_from_tags(sentence.tags, scheme)}
    dev = read_conll(args.dev)
    texts = [sentence.tokens for sentence in dev]

    def seen(entity: Entity) -> bool:
        row, start, end, kind = entity
        return (tuple(texts[row][start:end]), kind) in known

    gold = entities([sentence.tags for sentence in dev], scheme)
    results = {"train": args.train, "dev": args.dev, "gold_entities": len(gold),
               "unseen_share": round(sum(not seen(e) for e in gold) / len(gold), 4), "models": {}}
    for model in args.models:
        predictor = Predictor.load(model, device="cpu")
        started = time.perf_counter()
        predicted = entities([tagged.tags for tagged in predictor.tag_tokens(texts, batch_size=64)], scheme)
        row = {"seconds": round(time.perf_counter() - started, 1), "all": scores(gold, predicted)}
        for group, wanted in (("seen", True), ("unseen", False)):
            row[group] = scores({e for e in gold if seen(e) == wanted}, {e for e in predicted if seen(e) == wanted})
        results["models"][model] = row
    print(f"{len(gold)} dev entities, {results['unseen_share']:.1%} unseen in training")
    print(f"{'model':<40} {'F1':>7} {'seen F1':>8} {'unseen F1':>10} {'unseen R':>9} {'unseen P':>9}")
    for model, row in results["models"].items():
        print(f"{model:<40} {row['all']['f1']:>7.2%} {row['seen']['f1']:>8.2%} {row['unseen']['f1']:>10.2%} "
              f"{row['unseen']['recall']:>9.2%} {row['unseen']['precision']:>9.2%}")
    if args.out:
        write_file_atomically(Path(args.out), (json.dumps(results, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
