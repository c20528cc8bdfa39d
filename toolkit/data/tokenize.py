"""Word tokenisation with spaCy's rule-based tokenizer, keeping character offsets.

``spacy.blank(lang)`` runs only the tokenizer (no statistical model), so it needs nothing downloaded.
spaCy splits text at whitespace first and tokenises each whitespace-free chunk on its own (its prefix, suffix,
infix, special-case and URL rules never look across whitespace; spaCy's own cache is keyed by the chunk), so
:meth:`Tokenizer.tokenize_many` splits with ``str.split`` and asks spaCy only about chunks it has not seen,
remembering the answer: several times the speed, since most chunks of a corpus repeat. One spaCy step does look
across whitespace: special cases that contain punctuation (``:)``, ``:))``, ``'s``…) are matched over the whole
token sequence, and a longer match that straddles a space (``:) )`` against ``:))``) is dropped *and* blocks the
shorter one inside the chunk. So each chunk also remembers which pieces of such special cases it ends and starts
with; a text where one chunk ends with piece *k* of a special case and the next starts with piece *k + 1* goes
through spaCy whole. The tokens are spaCy's own, text for text (tests/data/test_tokenize_fast.py on random strings
of awkward characters; benchmarks/tokenize_check.py on every IMDB and CoNLL text).
HTML line breaks (``<br />``, as in IMDB) are blanked to spaces *of the same length* before tokenising,
which removes them from the tokens while every token's character offsets still point into the original
text (the NER adapters rely on that). Control characters are blanked the same way (``toolkit.data.textrules``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from toolkit.data.textrules import blank_controls, clip_runs

TRUNCATIONS = ("head", "tail", "head+tail")
CHUNK_CACHE_SIZE = 200_000
"""Whitespace-free chunks whose tokens :class:`Tokenizer` remembers (about 50 MB). Once full it keeps what it has:
the chunks met first are, by Zipf's law, the frequent ones, and rarer ones are tokenised each time they come
(IMDB's 75k reviews hold over 600k distinct chunks; emptying a full memory instead made a second pass over them
no faster than spaCy)."""
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


@dataclass(frozen=True)
class _SpecialCasePieces:
    """What :class:`Tokenizer` needs to know of spaCy's special cases to spot one that could straddle a space."""

    pairs: frozenset[tuple[str, str]]
    """Consecutive pieces ``(piece k, piece k + 1)`` of the special cases spaCy matches over the token sequence."""
    ends: frozenset[str]
    """The first pieces of those pairs (what a chunk may end with), and as a tuple for ``str.endswith``."""
    end_tuple: tuple[str, ...]
    starts: frozenset[str]
    """The second pieces (what the next chunk may start with), and as a tuple for ``str.startswith``."""
    start_tuple: tuple[str, ...]
    special: frozenset[str]
    """Every special case and every piece one makes: a token outside it came from the affix rules alone."""
    affixes_only: Any
    """spaCy's tokenizer with its affix rules but no special cases (what the matcher's patterns are made of)."""


def _special_case_pieces(tokenizer: Any) -> _SpecialCasePieces:
    """The special cases spaCy matches over the token sequence (those its affix rules would split), as pieces."""
    from spacy.attrs import ORTH  # the rules' pieces are keyed by the attribute id (65)
    from spacy.tokenizer import Tokenizer as SpacyTokenizer

    affixes_only = SpacyTokenizer(tokenizer.vocab, rules={}, prefix_search=tokenizer.prefix_search,
                                  suffix_search=tokenizer.suffix_search, infix_finditer=tokenizer.infix_finditer,
                                  token_match=tokenizer.token_match, url_match=tokenizer.url_match)
    rules = tokenizer.rules or {}
    pairs: set[tuple[str, str]] = set()
    for string in rules:
        # the condition of spaCy's Tokenizer.add_special_case for adding a rule to its special-case matcher
        if (not tokenizer.faster_heuristics or tokenizer.find_prefix(string) or tokenizer.find_infix(string)
                or tokenizer.find_suffix(string)):
            pairs.update(itertools.pairwise(token.text for token in affixes_only(string)))
    ends, starts = frozenset(end for end, _ in pairs), frozenset(start for _, start in pairs)
    special = frozenset(rules) | {piece.get(ORTH, piece.get("ORTH")) for pieces in rules.values() for piece in pieces}
    return _SpecialCasePieces(frozenset(pairs), ends, tuple(ends), starts, tuple(starts), special, affixes_only)


class Tokenizer:
    """Turns texts into token strings (and offsets) the same way at training and prediction time."""

    def __init__(self, settings: TokenizerSettings | None = None) -> None:
        import spacy  # deferred: spaCy import costs seconds and not every caller tokenises

        self.settings = settings or TokenizerSettings()
        self._spacy_tokenizer = spacy.blank(self.settings.lang).tokenizer
        # chunk → (its tokens, lower-cased if configured; special-case pieces it ends with; pieces it starts with)
        self._chunks: dict[str, tuple[tuple[str, ...], frozenset[str] | None, frozenset[str] | None]] = {}
        self._special = _special_case_pieces(self._spacy_tokenizer)

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

    def _learn(self, chunks: list[str]) -> dict[str, tuple[tuple[str, ...], frozenset[str] | None,
                                                             frozenset[str] | None]]:
        """Tokenise chunks not seen before in one spaCy call; what :meth:`tokenize_many` needs of each, remembered
        while there is room.

        The chunks are joined by newlines: spaCy makes each newline a whitespace token, which no special-case
        pattern contains, so every chunk comes out exactly as it would alone.
        """
        pieces: list[list[str]] = [[]]
        for token in self._spacy_tokenizer("\n".join(chunks)):
            if token.is_space:
                pieces.append([])
            else:
                pieces[-1].append(token.text)
        lowercase = self.settings.lowercase
        learned = {}
        for chunk, spacy_tokens in zip(chunks, pieces, strict=True):
            ends, starts = self._edge_pieces(chunk, spacy_tokens, -1), self._edge_pieces(chunk, spacy_tokens, 0)
            tokens = tuple(token.lower() for token in spacy_tokens) if lowercase else tuple(spacy_tokens)
            learned[chunk] = (tokens, ends, starts)
        room = CHUNK_CACHE_SIZE - len(self._chunks)
        if room > 0:
            self._chunks.update(learned if room >= len(learned) else dict(itertools.islice(learned.items(), room)))
        return learned

    def _edge_pieces(self, chunk: str, tokens: list[str], edge: int) -> frozenset[str] | None:
        """The special-case pieces the chunk's first (``edge`` 0) or last (-1) token may be before spaCy's
        special-case matcher runs: its first/last token, that token's own affix pieces, and the chunk's first/last
        affix piece; None when none of them is a piece of a pair that could straddle a space."""
        special = self._special
        pieces = special.starts if edge == 0 else special.ends
        # every candidate is a prefix (suffix) of the chunk: most chunks are settled by one C-level check
        if not (chunk.startswith(special.start_tuple) if edge == 0 else chunk.endswith(special.end_tuple)):
            return None
        token = tokens[edge]
        if token not in special.special:  # no special case at this edge: the affix rules alone made it
            return frozenset((token,)) if token in pieces else None
        candidates = {token, special.affixes_only(token)[edge].text, special.affixes_only(chunk)[edge].text}
        return frozenset(candidates & pieces) or None

    def _straddles(self, ends: frozenset[str], starts: frozenset[str]) -> bool:
        """Whether a special case could match across the space between a chunk ending and the next starting so."""
        pairs = self._special.pairs
        return any((end, start) in pairs for end in ends for start in starts)

    def _finish(self, tokens: list[str]) -> list[str]:
        """Truncation as configured (the tokens are already lower-cased when that is configured)."""
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

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        """Many texts → their tokens: spaCy's, chunk by whitespace-free chunk (see the module docstring)."""
        known = self._chunks
        results = []
        for text in self._prepare(texts):
            chunks = text.split()
            missing = [chunk for chunk in chunks if chunk not in known]
            # the memory only grows: what was in it stays; each new chunk is tokenised once
            learned = self._learn(list(dict.fromkeys(missing))) if missing else {}
            tokens: list[str] = []
            previous_ends = None
            for chunk in chunks:
                entry = known.get(chunk) or learned[chunk]
                if previous_ends is not None and entry[2] is not None and self._straddles(previous_ends, entry[2]):
                    tokens = self._whole_text(text)
                    break
                tokens.extend(entry[0])
                previous_ends = entry[1]
            results.append(self._finish(tokens))
        return results

    def _whole_text(self, text: str) -> list[str]:
        """One (blanked, clipped) text through spaCy as a whole, lower-cased if configured."""
        lowercase = self.settings.lowercase
        return [token.text.lower() if lowercase else token.text
                for token in self._spacy_tokenizer(text) if not token.is_space]

    def tokenize_with_spacy(self, texts: Iterable[str]) -> list[list[str]]:
        """The same as :meth:`tokenize_many`, the slow way: whole texts through spaCy (what the tests compare)."""
        return [self._finish(self._whole_text(text)) for text in self._prepare(texts)]

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """``(token, start, end)`` character spans into ``text``; original casing, no truncation."""
        doc = self._spacy_tokenizer(self._blank(text))
        return [(token.text, token.idx, token.idx + len(token.text)) for token in doc if not token.is_space]
