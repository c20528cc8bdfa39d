"""The `bilstm` command.

    bilstm fit --config configs/X.yaml [--trainer.max_epochs N ...]   train (LightningCLI), export a model dir
    bilstm validate|test --config ...                                 LightningCLI evaluation loops
    bilstm evaluate MODEL_DIR DATA_FILE                               metrics as one JSON object on stdout
    bilstm label MODEL_DIR INPUT OUTPUT                               batch labelling job
    bilstm serve MODEL_DIR [MODEL_DIR ...] --port P                   BentoML HTTP service

Errors in the user's input print one clear line on stderr and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from toolkit.errors import ToolkitError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bilstm", description="Train, evaluate and serve recurrent NLP models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in LIGHTNING_SUBCOMMANDS:
        commands.add_parser(name, help=f"{name} with LightningCLI (see `bilstm {name} --help`)", add_help=False)

    evaluate = commands.add_parser("evaluate", help="score a model directory on a labelled file")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("data_file")
    evaluate.add_argument("--text-field", default="text", help="text field of JSONL/CSV files")
    evaluate.add_argument("--label-field", default="label", help="label field of JSONL/CSV files")
    evaluate.add_argument("--batch-size", type=int, default=64)

    label = commands.add_parser("label", help="label a .txt/.jsonl/.conll file into JSONL (or CoNLL)")
    label.add_argument("model_dir")
    label.add_argument("input")
    label.add_argument("output")
    label.add_argument("--text-field", default="text", help="text field of .jsonl input")
    label.add_argument("--batch-size", type=int, default=64)
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        from toolkit.training import run

        run(argv)
        return 0
    args = _parser().parse_args(argv)
    if args.command == "evaluate":
        from toolkit.evaluate import evaluate

        metrics = evaluate(args.model_dir, args.data_file, text_field=args.text_field,
                           label_field=args.label_field, batch_size=args.batch_size)
        print(json.dumps(metrics))
    elif args.command == "label":
        from pipelines.label import label_file

        summary = label_file(args.model_dir, args.input, args.output, text_field=args.text_field,
                             batch_size=args.batch_size)
        print(json.dumps(summary), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bilstm` console script."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except ToolkitError as error:
        print(f"bilstm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bilstm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
