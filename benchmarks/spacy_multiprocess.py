"""``nlp.pipe(texts, n_process=N)`` against ``n_process=1``: texts/s of a spaCy pipeline with a bilstm component.

    python benchmarks/spacy_multiprocess.py MODEL_DIR [--texts 2000] [--n-process 1,2] [--batch-size 256]
        [--repeats 3] [--backend torch] [--start-method fork] [--out docs/results/spacy_multiprocess.json]

One process builds ``spacy.blank("en")`` with the model directory's component (``bilstm_textcat`` for a classifier,
``bilstm_ner`` for a tagger…), runs it once on the texts (a warm-up, which is also what used to make the forked
workers hang), then times ``nlp.pipe`` over the same IMDB reviews for every ``--n-process``, interleaved
``--repeats`` times; each figure is the median. A run with N > 1 includes starting its N workers, as every
``nlp.pipe`` call does (a fork takes milliseconds; a spawn worker imports torch and spaCy, seconds).

Threads: ``n_process=1`` uses torch's setting of this process (all cores unless ``OMP_NUM_THREADS`` says
otherwise), and once more with 1 thread; each worker uses the component's ``num_threads``, 1 by default
(``--num-threads`` sets it). ``spaCy alone`` rows time a blank pipeline (tokenising only) the same way: what
``n_process`` costs before any model runs (texts out, ``Doc.to_bytes``, the pipes, ``Doc.from_bytes`` back). The
ratio is to the component at ``n_process=1``, default threads. A ``bilstm label`` row labels the same texts (a .txt
file, one per line, in one process with the same threads) with the batch job, for comparison. The table also says
whether every run gave the same
annotations as that run, and the load average before and after: the machine may be shared, which makes every
number noisier.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predict_speed import load_texts


def annotations(doc) -> object:
    """What the component wrote on a doc, comparable across runs (cats rounded: batches differ in padding)."""
    if doc.cats:
        return max(doc.cats, key=doc.cats.get), round(max(doc.cats.values()), 4)
    return [(ent.label_, ent.start_char, ent.end_char) for ent in doc.ents] or doc.user_data or None


def label_rate(model_dir: str, texts: list[str], backend: str, repeats: int) -> float:
    """texts/s of the batch job (`bilstm label`'s ``label_file``) over the same texts: median of ``repeats``."""
    import tempfile

    from pipelines.label import label_file

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "texts.txt"
        source.write_text("".join(" ".join(text.split()) + "\n" for text in texts), encoding="utf-8")
        times = []
        for repeat in range(repeats):
            started = time.perf_counter()
            label_file(model_dir, source, Path(scratch) / f"labels{repeat}.jsonl", progress=False, backend=backend)
            times.append(time.perf_counter() - started)
    return round(len(texts) / statistics.median(times), 1)


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a model directory written by `bilstm fit`")
    parser.add_argument("--texts", type=int, default=2000, help="IMDB reviews (the bundled sample where absent)")
    parser.add_argument("--n-process", default="1,2", help="comma-separated n_process values (1 is always run)")
    parser.add_argument("--batch-size", type=int, default=256, help="nlp.pipe's batch_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--num-threads", type=int, default=None, help="the component's num_threads (workers: 1)")
    parser.add_argument("--start-method", default=None, choices=("fork", "spawn", "forkserver"),
                        help="multiprocessing start method (default: the platform's)")
    parser.add_argument("--out", type=Path, default=None, help="write the raw figures as JSON here")
    args = parser.parse_args()
    if args.start_method:
        multiprocessing.set_start_method(args.start_method)

    import spacy
    import torch

    from toolkit.artifact import read_meta
    from toolkit.registry import TASKS

    factory = TASKS[read_meta(Path(args.model_dir)).task].spacy_factory
    texts = load_texts(args.texts)
    n_processes = sorted({1, *(int(n) for n in args.n_process.split(","))})
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": str(args.model_dir), "backend": args.backend,
                                  "num_threads": args.num_threads})
    report = {"command": "python benchmarks/spacy_multiprocess.py " + " ".join(sys.argv[1:]),
              "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "component": factory, "backend": args.backend, "texts": len(texts),
              "characters": sum(map(len, texts)), "batch_size": args.batch_size,
              "start_method": multiprocessing.get_start_method(), "load_average_before": load_average()}
    blank = spacy.blank("en")  # spaCy's own cost of n_process: tokenising, Doc.to_bytes/from_bytes, the pipes
    default_threads = torch.get_num_threads()
    workers = [n for n in n_processes if n > 1]
    settings: list[tuple[int, int | None, str]] = [  # (n_process, torch threads per process, pipeline)
        (1, default_threads, "component"), *([(1, 1, "component")] if default_threads > 1 else []),
        *((n, args.num_threads or 1, "component") for n in workers),
        (1, None, "spaCy alone"), *((n, None, "spaCy alone") for n in workers)]
    # Warm-up in this process, before any fork, on all the texts: first-time costs (oneDNN's primitives for each new
    # batch shape, the tokenizer's memory) stay out of the timings; a forked worker inherits them, a spawned one not.
    list(nlp.pipe(texts, batch_size=args.batch_size))
    seconds: dict[tuple, list[float]] = {setting: [] for setting in settings}
    results: dict[tuple, list[object]] = {}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every setting alike
        for setting in settings:
            n, threads, pipeline = setting
            torch.set_num_threads(threads if n == 1 and threads else default_threads)
            started = time.perf_counter()
            docs = (nlp if pipeline == "component" else blank).pipe(texts, n_process=n, batch_size=args.batch_size)
            results[setting] = [annotations(doc) for doc in docs]
            seconds[setting].append(time.perf_counter() - started)
    torch.set_num_threads(default_threads)
    report["bilstm_label"] = label_rate(args.model_dir, texts, args.backend, args.repeats)
    report["load_average_after"] = load_average()
    reference = (1, default_threads, "component")
    serial_rate = len(texts) / statistics.median(seconds[reference])
    report["rows"] = []
    for (n, threads, pipeline), values in seconds.items():
        rate = len(texts) / statistics.median(values)
        same = (sum(a == b for a, b in zip(results[(n, threads, pipeline)], results[reference], strict=True))
                if pipeline == "component" else None)
        report["rows"].append({"pipeline": pipeline, "n_process": n, "threads_per_process": threads,
                               "texts_per_s": round(rate, 1), "median_s": round(statistics.median(values), 3),
                               "min_s": round(min(values), 3), "max_s": round(max(values), 3),
                               "ratio_to_1": round(rate / serial_rate, 2), "same_as_1": same})

    print(f"{factory} ({args.backend}) on {len(texts)} texts ({report['characters']:,} characters), "
          f"nlp.pipe batch_size {args.batch_size}, start method {report['start_method']}, "
          f"median of {args.repeats}; {report['machine']}")
    print(f"load average (1, 5, 15 min): before {report['load_average_before']}, after "
          f"{report['load_average_after']}")
    print("| pipeline | n_process | torch threads per process | texts/s | × n_process=1 | same as n_process=1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in report["rows"]:
        component = row["pipeline"] == "component"
        same = f"{row['same_as_1']}/{len(texts)}" if component else "–"
        print(f"| {factory if component else 'spaCy alone (blank, no component)'} | {row['n_process']} | "
              f"{row['threads_per_process'] or '–'} | {row['texts_per_s']:,} | {row['ratio_to_1']:.2f} | {same} |")
    label = report["bilstm_label"]
    print(f"| bilstm label (batch job, one process) | – | {default_threads} | {label:,} | "
          f"{label / serial_rate:.2f} | – |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
