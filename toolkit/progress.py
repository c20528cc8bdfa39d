"""Progress of long steps: tqdm on a terminal; elsewhere (CI, ``nohup``, a log file) a line every few seconds.

    for text in progress(texts, "tokenising train", total=len(texts), unit="texts"):
        ...
    # not a terminal:  tokenising train: 6,144/22,500 texts (27%), 1,020 texts/s, 6 s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
EVERY_SECONDS = 10.0


def progress(items: Iterable[T], description: str, total: int | None = None, unit: str = "items",
             every: float = EVERY_SECONDS) -> Iterator[T]:
    """Yield ``items`` while reporting how many went by, on stderr; a last line gives the count, rate and time."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=description, total=total, unit=f" {unit}", file=sys.stderr, leave=False,
                        dynamic_ncols=True)
        return
    started = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every:
            last = now
            print(_line(description, done, total, unit, now - started), file=sys.stderr, flush=True)
    if time.perf_counter() - started >= every:  # quick steps stay quiet
        print(_line(description, done, total, unit, time.perf_counter() - started) + " (done)", file=sys.stderr,
              flush=True)


def _line(description: str, done: int, total: int | None, unit: str, seconds: float) -> str:
    share = f"/{total:,} {unit} ({done / total:.0%})" if total else f" {unit}"
    return f"{description}: {done:,}{share}, {done / max(seconds, 1e-9):,.0f} {unit}/s, {seconds:.0f} s"
