"""`bilstm serve MODEL_DIR [MODEL_DIR ...] --port P` (placeholder until the BentoML service lands)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")


def run(args: argparse.Namespace) -> int:
    from toolkit.errors import ToolkitError

    raise ToolkitError("`bilstm serve` is not implemented yet")
