"""Overlap tokenisation with model compute: the next window of texts is encoded in a thread.

Tokenising with spaCy holds the GIL, while torch's kernels release it, so a background thread can
tokenise the next window of texts while the model runs on the current one; on a 2-core machine this
hides most of the tokeniser's cost (~15% of the encoder's time on IMDB reviews).

Ordering: texts are first ordered by character length (a free proxy of token count), cut into windows,
and each window is sorted exactly by token count once tokenised. That keeps padding within ~3% of a
global exact sort (measured on IMDB: 7.2% vs 4.5% padded positions) while needing no tokens up front.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

WINDOW_SIZE = 1 << 18
"""Largest total size (characters of raw texts, or tokens of token lists) of one prefetch window: 256 IMDB reviews
(~330k characters) come in windows of ~200, while 20,000-character texts come a dozen at a time."""


def prefetched_windows(
    texts: Sequence[str], encode: Callable[[list[str]], list[T]], window: int, first_window: int | None = None,
    max_size: int = WINDOW_SIZE,
) -> Iterator[tuple[list[int], list[T]]]:
    """Yield ``(input indices, encoded items)`` per window, encoding the next window in a thread.

    Args:
        texts: the inputs (strings, or token lists).
        encode: texts → one encoded item per text (e.g. token ids).
        window: texts per window (a few batches).
        first_window: texts in the first window (default ``window // 4``). Nothing overlaps the first
            window's encoding, so it is kept small: the model starts sooner and the thread is ahead from
            then on (for 512 IMDB reviews, waiting on a 256-text first window was 13% of the predict time).
        max_size: a window also ends once its texts' total ``len`` (characters, or tokens) reaches this, so
            the encoded windows held at once stay bounded however long the texts are.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    first = max(1, min(window, first_window if first_window is not None else window // 4))
    windows: list[list[int]] = [[]]
    size = 0
    for index in order:
        limit = first if len(windows) == 1 else window
        if windows[-1] and (len(windows[-1]) >= limit or size + len(texts[index]) > max_size):
            windows.append([])
            size = 0
        windows[-1].append(index)
        size += len(texts[index])
    windows = [indices for indices in windows if indices]
    if len(windows) <= 1:
        for indices in windows:
            yield indices, encode([texts[i] for i in indices])
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
        pending = pool.submit(encode, [texts[i] for i in windows[0]])
        for position, indices in enumerate(windows):
            encoded = pending.result()
            if position + 1 < len(windows):
                pending = pool.submit(encode, [texts[i] for i in windows[position + 1]])
            yield indices, encoded
