"""How a language model reads text: its tokenizer settings, corpus files and the token stream (no Lightning).

Training reads one contiguous stream: every line (document or sentence) of the corpus, each followed by the
end-of-sentence token ``<eos>``. A backward model reads the same stream reversed, so every line comes right to
left, preceded by its ``<eos>``. Scoring and generation treat each text on its own, starting from ``<eos>`` as
the start symbol (forward: ``<eos> w1 … wn`` predicts ``w1 … wn <eos>``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit.data.readers import _field, data_format, decoded_lines, read_records
from toolkit.data.textrules import blank_controls
from toolkit.data.vocab import EOS
from toolkit.errors import ConfigError, DataError

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


def read_lines(path: str | Path, text_field: str = "text") -> Iterator[tuple[int, str]]:
    """``(line, text)`` of every non-blank line of a .txt (one document per line) or .jsonl file (.gz too)."""
    kind = data_format(path)
    if kind == "jsonl":
        for line, record in read_records(path):
            yield line, _field(record, text_field, path, line, "text")
    elif kind == "txt":
        for line, text in decoded_lines(path):
            if text.strip():
                yield line, text
    else:
        raise DataError(path, f"a language model reads .txt (one text per line) or .jsonl, not a {kind} file",
                        hint="name the file .txt, .txt.gz, .jsonl or .jsonl.gz")


def token_stream(token_lists: Sequence[Sequence[str]], backward: bool) -> list[str]:
    """Every text's tokens followed by ``<eos>``, in one list; reversed as a whole for a backward model."""
    stream = [token for tokens in token_lists for token in (*tokens, EOS)]
    return stream[::-1] if backward else stream


def direction_checked(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction
