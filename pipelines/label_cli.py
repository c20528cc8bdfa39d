"""`bilstm label MODEL_DIR INPUT OUTPUT`: argument definitions and entry point (imports stay light)."""

from __future__ import annotations

import argparse
import json
import sys

from toolkit.argtypes import positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir")
    parser.add_argument("input", help=".txt (one text per line), .jsonl (a text field) or CoNLL (taggers); .gz too")
    parser.add_argument("output", help=".jsonl, or .conll for a tagger reading CoNLL input; bad lines go to "
                        "OUTPUT.errors.jsonl")
    parser.add_argument("--text-field", default="text", help="text field of .jsonl input")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--window", type=positive_int, default=4096,
                        help="lines (CoNLL: sentences) read, length-sorted and committed together (default 4096)")
    parser.add_argument("--max-chars", type=positive_int, help="longest text the model takes (default 20000); longer "
                        "texts go to the errors file (a classifier reading only its first/last N tokens measures "
                        "what it reads)")
    parser.add_argument("--truncate", action="store_true", help="cut texts over --max-chars instead; their records "
                        'say "input_truncated": true')
    parser.add_argument("--restart", action="store_true",
                        help="start over instead of resuming an interrupted job on the same OUTPUT")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    bar.add_argument("--progress", dest="progress", action="store_true",
                     help="progress bar even when stderr is not a terminal")
    parser.add_argument("--device", help="cpu, cuda, cuda:1… (default: CUDA when available)")
    parser.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's setting)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="onnx: the model directory's model.onnx on ONNX Runtime (bilstm export DIR --onnx)")
    parser.add_argument("--quantize", action="store_true", help="int8: the dynamic-quantized network on the CPU, "
                        "or with --backend onnx the directory's model.int8.onnx (bilstm export DIR --onnx --int8)")
    scale = parser.add_argument_group("data-parallel (Lightning Trainer.predict; one process per device)")
    scale.add_argument("--devices", type=positive_int, default=1, help="processes per node (default 1: no Lightning)")
    scale.add_argument("--num-nodes", type=positive_int, default=1)
    scale.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    scale.add_argument("--strategy", default="ddp", help="Lightning strategy (default ddp)")


def run(args: argparse.Namespace) -> int:
    from pipelines.label import label_file

    summary = label_file(args.model_dir, args.input, args.output, text_field=args.text_field,
                         batch_size=args.batch_size, window=args.window, restart=args.restart,
                         progress=args.progress, device=args.device, num_threads=args.threads,
                         devices=args.devices, accelerator=args.accelerator, strategy=args.strategy,
                         num_nodes=args.num_nodes, max_chars=args.max_chars, truncate=args.truncate,
                         backend=args.backend, quantize=args.quantize)
    if summary is not None:  # None: a non-zero rank of a data-parallel job
        print(json.dumps(summary), file=sys.stderr)
    return 0
