"""`bilstm label MODEL_DIR INPUT OUTPUT`: argument definitions and entry point (imports stay light)."""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir")
    parser.add_argument("input", help=".txt (one text per line), .jsonl (a text field) or CoNLL (taggers)")
    parser.add_argument("output", help=".jsonl, or .conll for a tagger reading CoNLL input")
    parser.add_argument("--text-field", default="text", help="text field of .jsonl input")
    parser.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    from pipelines.label import label_file

    summary = label_file(args.model_dir, args.input, args.output, text_field=args.text_field,
                         batch_size=args.batch_size)
    print(json.dumps(summary), file=sys.stderr)
    return 0
