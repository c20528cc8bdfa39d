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


def port_number(value: str) -> int:
    """argparse type for a TCP port: an integer in 1..65535."""
    from toolkit.limits import PORT_RANGE

    number = positive_int(value)
    low, high = PORT_RANGE
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"{number} is not a TCP port ({low}..{high})")
    return number
