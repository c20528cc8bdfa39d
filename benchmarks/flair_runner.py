"""Flair side of benchmarks/ner_speed.py; runs inside the separate Flair virtual environment.

    .flair-venv/bin/python benchmarks/flair_runner.py --sentences S.json --batch-sizes 1,32,256 --repeats 3

Builds ``TagModule(hidden_size=256, rnn_layers=2, use_crf=True)`` over 100-d trainable
``OneHotEmbeddings`` (the same size as the toolkit's tagger in the comparison), times ``predict`` per
batch size and one training epoch, and prints one JSON object. Flair pins transformers < 5, so it cannot
share the toolkit's environment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", required=True, help="JSON: list of {tokens, tags}")
    parser.add_argument("--batch-sizes", default="1,32,256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="also time one training epoch")
    args = parser.parse_args()

    import flair
    from flair.data import Corpus, Sentence
    from flair.datasets import FlairDatapointDataset
    from flair.embeddings import OneHotEmbeddings
    from flair.models import TagModule

    flair.device = torch.device("cpu")
    with open(args.sentences, encoding="utf-8") as handle:
        rows = json.loads(handle.read())

    def iob1_spans(tags: list[str]) -> list[tuple[int, int, str]]:
        spans, start, kind = [], None, ""
        for position, tag in enumerate([*tags, "O"]):
            if tag == "O" or tag.startswith("B-") or tag[2:] != kind:
                if start is not None:
                    spans.append((start, position, kind))
                start, kind = (None, "") if tag == "O" else (position, tag[2:])
        return spans

    def make_sentences() -> list[Sentence]:
        sentences = []
        for row in rows:
            sentence = Sentence(row["tokens"])
            for start, end, kind in iob1_spans(row["tags"]):  # Flair's NER tagger learns entity spans
                sentence[start:end].add_label("ner", kind)
            sentences.append(sentence)
        return sentences

    corpus = Corpus(FlairDatapointDataset(make_sentences()), FlairDatapointDataset(make_sentences()[:64]),
                    FlairDatapointDataset(make_sentences()[:64]), sample_missing_splits=False)
    embeddings = OneHotEmbeddings.from_corpus(corpus, field="text", embedding_length=100, min_freq=1)
    tagger = TagModule(hidden_size=256, embeddings=embeddings,
                            tag_dictionary=corpus.make_label_dictionary("ner", add_unk=False),
                            tag_type="ner", tag_format="BIO", use_crf=True, rnn_layers=2)
    tagger.eval()
    tokens = sum(len(row["tokens"]) for row in rows)
    result = {"flair": flair.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "tokens": tokens, "sentences": len(rows), "predict": {}}
    for batch_size in map(int, args.batch_sizes.split(",")):
        subset = rows if batch_size > 1 else rows[:256]  # batch 1 is slow: time the first 256 sentences
        times = []
        for _ in range(args.repeats + 1):
            sentences = make_sentences()[: len(subset)]
            started = time.perf_counter()
            tagger.predict(sentences, mini_batch_size=batch_size, label_name="predicted")
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times[1:])  # the first pass warms up
        subset_tokens = sum(len(row["tokens"]) for row in subset)
        result["predict"][str(batch_size)] = {"tokens_per_s": subset_tokens / seconds,
                                              "sentences_per_s": len(subset) / seconds}
    if args.train:
        from flair.trainers import ModelTrainer

        tagger.train()
        trainer = ModelTrainer(tagger, corpus)
        started = time.perf_counter()
        # One epoch over the same sentences (Flair also scores its 64-sentence dev split once at the end).
        trainer.train("/tmp/flair_bench_run", learning_rate=0.1, mini_batch_size=32, max_epochs=1,
                      save_final_model=False)
        result["train_tokens_per_s"] = tokens / (time.perf_counter() - started)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
