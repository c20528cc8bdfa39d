"""argparse types shared by the `bilstm` subcommands (a leaf module: every command's parser imports it)."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """argparse type for counts and sizes (batch size, window, threads, workers…): an integer ≥ 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number
