"""The `bilstm` command.

    bilstm fit --config configs/X.yaml [--trainer.max_epochs N ...]   train (LightningCLI), export a model dir
    bilstm validate|test --config ...                                 LightningCLI evaluation loops
    bilstm evaluate MODEL_DIR DATA_FILE                               metrics as one JSON object on stdout
    bilstm label MODEL_DIR INPUT OUTPUT                               batch labelling job
    bilstm label MODEL_DIR INPUT... OUTPUT_DIR --engine ray           a corpus (files, dirs, globs, s3://) on Ray
    bilstm serve MODEL_DIR [MODEL_DIR ...] --port P                   BentoML HTTP service
    bilstm generate LM_DIR --prompt "..." [--max-tokens N ...]        sample text from a language model
    bilstm export MODEL_DIR --onnx [--int8]                           add model.onnx (ONNX Runtime backend)
    bilstm ensemble DIR1 DIR2 [...] --out DIR [--force]               one model directory averaging several
    bilstm report [model] MODEL_DIR DATA_FILE --out DIR               HTML report of a model on a labelled file
    bilstm report run RUN_DIR --out DIR                               HTML learning curves of a training run

Each non-Lightning subcommand lives in its own module with ``configure(parser)`` (argument definitions,
no heavy imports) and ``run(args) -> int``. Errors in the user's input print one clear line on stderr
and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from toolkit.errors import ToolkitError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")
# subcommand → (module with configure/run, one-line help)
COMMANDS = {
    "evaluate": ("toolkit.evaluate", "score a model directory on a labelled file (one JSON object)"),
    "label": ("pipelines.label_cli", "label a .txt/.jsonl/.conll file into JSONL (or CoNLL for taggers); "
              "--engine ray: many files or s3:// on a Ray cluster"),
    "serve": ("serving.cli", "serve model directories over HTTP with BentoML"),
    "generate": ("toolkit.generate", "sample text from a language model directory"),
    "export": ("toolkit.onnx_export", "add an ONNX Runtime copy (and int8) of a model to its directory"),
    "ensemble": ("toolkit.ensemble", "one model directory whose network averages several models of one task"),
    "report": ("toolkit.report.cli", "HTML reports: a model on a labelled file, or a training run's curves"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bilstm", description="Train, evaluate and serve recurrent NLP models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in LIGHTNING_SUBCOMMANDS:
        commands.add_parser(name, help=f"{name} with LightningCLI (see `bilstm {name} --help`)", add_help=False)
    for name, (module, help_text) in COMMANDS.items():
        importlib.import_module(module).configure(commands.add_parser(name, help=help_text, description=help_text))
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        from toolkit.training import run

        run(argv)
        return 0
    if len(argv) > 1 and argv[0] == "report" and argv[1] not in ("model", "run") and not argv[1].startswith("-"):
        argv = ["report", "model", *argv[1:]]  # the short form `bilstm report DIR DATA --out D` is a model report
    args = _parser().parse_args(argv)
    return importlib.import_module(COMMANDS[args.command][0]).run(args)


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
