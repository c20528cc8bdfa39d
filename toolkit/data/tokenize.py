"""Word tokenisation with spaCy's rule-based tokenizer, keeping character offsets.

``spacy.blank(lang)`` runs only the tokenizer (no statistical model), so it needs nothing downloaded.
HTML line breaks (``<br />``, as in IMDB) are blanked to spaces *of the same length* before tokenising,
which removes them from the tokens while every token's character offsets still point into the original
text (the NER adapters rely on that). Control characters are blanked the same way (``toolkit.data.textrules``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from toolkit.data.textrules import blank_controls, clip_runs

TRUNCATIONS = ("head", "tail", "head+tail")
HTML_BREAK = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class TokenizerSettings:
    """How text becomes tokens; stored in the model directory so every consumer tokenises alike."""

    lang: str = "en"
    """spaCy language code for the rule-based tokenizer."""
    lowercase: bool = True
    """Lower-case tokens before the vocabulary lookup."""
    html_breaks: bool = True
    """Treat ``<br />`` tags as whitespace."""
    max_tokens: int | None = None
    """Keep at most this many tokens per text (None = all)."""
    truncate: str = "head"
    """Which tokens a long text keeps: ``head`` (the first), ``tail`` (the last, as Keras' ``pad_sequences``
    does by default) or ``head+tail`` (a quarter from the start, the rest from the end)."""

    def __post_init__(self) -> None:
        if self.truncate not in TRUNCATIONS:
            raise ValueError(f"truncate must be one of {TRUNCATIONS}, got {self.truncate!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _blank_breaks(text: str) -> str:
    return HTML_BREAK.sub(lambda match: " " * len(match.group()), text)


class Tokenizer:
    """Turns texts into token strings (and offsets) the same way at training and prediction time."""

    def __init__(self, settings: TokenizerSettings | None = None) -> None:
        import spacy  # deferred: spaCy import costs seconds and not every caller tokenises

        self.settings = settings or TokenizerSettings()
        self._spacy_tokenizer = spacy.blank(self.settings.lang).tokenizer

    def _blank(self, text: str) -> str:
        """HTML breaks (if configured) and control characters → spaces of the same length."""
        return blank_controls(_blank_breaks(text) if self.settings.html_breaks else text)

    def _prepare(self, texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            yield self.clip(text)

    def clip(self, text: str) -> str:
        """The part of ``text`` (blanked) that tokenisation reads: with ``max_tokens`` set, only the whitespace
        runs that can supply the kept tokens, so a 1 MB review costs what its last 400 tokens cost and gives
        exactly the same tokens (:func:`~toolkit.data.textrules.clip_runs`)."""
        text = self._blank(text)
        limit = self.settings.max_tokens
        return clip_runs(text, limit, self.settings.truncate) if limit else text

    def _finish(self, tokens: list[str]) -> list[str]:
        if self.settings.lowercase:
            tokens = [token.lower() for token in tokens]
        limit = self.settings.max_tokens
        if not limit or len(tokens) <= limit:
            return tokens
        if self.settings.truncate == "head":
            return tokens[:limit]
        if self.settings.truncate == "tail":
            return tokens[-limit:]
        head = limit // 4  # reviews tend to open with context and close with the verdict
        return tokens[:head] + tokens[len(tokens) - (limit - head) :]

    def __call__(self, text: str) -> list[str]:
        """One text → its tokens (lower-cased and truncated as configured)."""
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: Iterable[str], batch_size: int = 256) -> list[list[str]]:
        """Many texts → their tokens; batched through spaCy's tokenizer pipe."""
        return [
            self._finish([token.text for token in doc if not token.is_space])
            for doc in self._spacy_tokenizer.pipe(self._prepare(texts), batch_size=batch_size)
        ]

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """``(token, start, end)`` character spans into ``text``; original casing, no truncation."""
        doc = self._spacy_tokenizer(self._blank(text))
        return [(token.text, token.idx, token.idx + len(token.text)) for token in doc if not token.is_space]
