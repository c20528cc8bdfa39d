"""How a language model reads text: its tokenizer settings, corpus files and the token stream (no Lightning).

Training reads one contiguous stream: every line (document or sentence) of the corpus, each followed by the
end-of-sentence token ``<eos>``. A backward model reads the same stream reversed, so every line comes right to
left, preceded by its ``<eos>``. Scoring and generation treat each text on its own, starting from ``<eos>`` as
the start symbol (forward: ``<eos> w1 … wn`` predicts ``w1 … wn <eos>``).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit.data.readers import _field, data_format, decoded_lines, read_records
from toolkit.data.textrules import blank_controls
from toolkit.data.vocab import EOS
from toolkit.errors import ConfigError, DataError
from toolkit.progress import progress

SPLITS = ("whitespace", "spacy")
LEVELS = ("word", "char")
DIRECTIONS = ("forward", "backward")


@dataclass(frozen=True)
class LMTokenizer:
    """meta.json ``tokenizer`` of a language model."""

    split: str = "whitespace"
    """``whitespace`` (corpora that come tokenised, like PTB) or ``spacy`` (the classifier's tokenizer)."""
    level: str = "word"
    """``word`` or ``char`` (characters of the whitespace-normalised text, spaces included)."""
    lowercase: bool = False
    """Lower-case before the vocabulary lookup."""
    html_breaks: bool = True
    """``spacy`` split: read ``<br />`` as whitespace (IMDB)."""
    lang: str = "en"
    """``spacy`` split: the language of the rule-based tokenizer."""

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"tokenizer split must be one of {SPLITS}, got {self.split!r}")
        if self.level not in LEVELS:
            raise ConfigError(f"tokenizer level must be one of {LEVELS}, got {self.level!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class TextToTokens:
    """Texts → token lists the way a language model was trained (built once: spaCy loads lazily)."""

    def __init__(self, settings: LMTokenizer) -> None:
        settings.validate()
        self.settings = settings
        self._spacy = None

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        settings = self.settings
        if settings.level == "char":
            return [list(" ".join(blank_controls(text.lower() if settings.lowercase else text).split()))
                    for text in texts]
        if settings.split == "whitespace":
            return [blank_controls(text.lower() if settings.lowercase else text).split() for text in texts]
        if self._spacy is None:
            from toolkit.data.tokenize import Tokenizer, TokenizerSettings

            self._spacy = Tokenizer(TokenizerSettings(lang=settings.lang, lowercase=settings.lowercase,
                                                      html_breaks=settings.html_breaks))
        return self._spacy.tokenize_many(texts)


CHUNK_LINES = 1024
_worker_tokens: TextToTokens | None = None  # one per worker process, built by _start_worker


def _start_worker(settings: LMTokenizer) -> None:
    global _worker_tokens
    _worker_tokens = TextToTokens(settings)


def _tokenise_in_worker(texts: list[str]) -> list[list[str]]:
    return _worker_tokens(texts)


class ChunkTokenizer:
    """Tokenise a corpus in chunks of 1,024 lines with a progress bar, in this process or in ``workers`` processes.

    The chunks come back in order, so the token lists are exactly those of one process. Worker processes are
    spawned, not forked (a fork after CUDA or OpenMP started is unsafe), and each builds its tokenizer once.
    Use as a context manager: the pool ends with the block.
    """

    def __init__(self, settings: LMTokenizer, workers: int = 1) -> None:
        self.settings, self.workers = settings, workers
        self._local = TextToTokens(settings)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ChunkTokenizer:
        # whitespace and character splits are str.split-fast: processes would only add pickling
        if self.workers > 1 and self.settings.split == "spacy" and self.settings.level == "word":
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(self.settings,))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def __call__(self, texts: list[str], name: str) -> list[list[str]]:
        """``texts`` → one token list per text; ``name`` labels the progress bar."""
        chunks = [texts[start : start + CHUNK_LINES] for start in range(0, len(texts), CHUNK_LINES)]
        done = self._pool.map(_tokenise_in_worker, chunks) if self._pool is not None else map(self._local, chunks)
        try:
            return [row for rows in progress(done, f"tokenising {name}", len(chunks), "chunks of 1,024 lines")
                    for row in rows]
        except BrokenProcessPool as error:
            raise ConfigError(f"a tokenising worker process died ({error}); a spawned worker re-imports the main "
                              "script, which must keep its work under `if __name__ == \"__main__\":`. Or set "
                              "data.tokenize_workers 1 to tokenise in this process") from None


def read_lines(path: str | Path, text_field: str = "text") -> Iterator[tuple[int, str]]:
    """``(line, text)`` of every non-blank line of a .txt (one document per line) or .jsonl file (.gz too), or
    of every sentence of a CoNLL column file (its tokens joined by spaces: a tagger's training text)."""
    kind = data_format(path)
    if kind == "conll":
        from toolkit.data.conll import Sentence, iter_conll

        for sentence in iter_conll(path, with_tags=False):
            if isinstance(sentence, Sentence):
                yield sentence.first_line, " ".join(sentence.tokens)
    elif kind == "jsonl":
        for line, record in read_records(path):
            yield line, _field(record, text_field, path, line, "text")
    elif kind == "txt":
        for line, text in decoded_lines(path):
            if text.strip():
                yield line, text
    else:
        raise DataError(path, f"a language model reads .txt (one text per line), .jsonl or CoNLL column files, "
                        f"not a {kind} file", hint="name the file .txt, .jsonl or .conll (optionally .gz)")


def token_stream(token_lists: Sequence[Sequence[str]], backward: bool) -> list[str]:
    """Every text's tokens followed by ``<eos>``, in one list; reversed as a whole for a backward model."""
    stream = [token for tokens in token_lists for token in (*tokens, EOS)]
    return stream[::-1] if backward else stream


def direction_checked(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction
