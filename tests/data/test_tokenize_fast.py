"""The chunk-cached tokenizer gives exactly spaCy's tokens on whole texts (benchmarks/tokenize_check.py: all of IMDB
and CoNLL; here: the samples and random strings of the characters where tokenizers disagree)."""

from __future__ import annotations

import json
import os
import random

import pytest

from tests.conftest import SAMPLES
from toolkit.data import tokenize
from toolkit.data.tokenize import Tokenizer, TokenizerSettings

PIECES = [
    "don't", "can't", "I'm", "won't", "y'all", "U.S.", "e.g.", "etc.", "Dr.", "1,000.50", "3.5%", "$20", "10-12",
    "http://example.com/a?b=c", "www.imdb.com", "me@mail.org", ":-)", ":)", "<3", "^_^", "(", ")", '"', "'", "...",
    "!!", "?!", "--", "—", "…", "«", "»", "«Bonjour»", "naïve", "Ärger", "İstanbul", "ß", "ﬁ", "日本語", "👍🏽",
    "a/b", "and/or", "x+y", "#tag", "@user", "<br />", "<br/>", "<BR>", "*", "well-known", "U.K.'s", "'90s",
    " ", "  ", "\t", "\n", "\r\n", "\xa0", "\u2028", "\u2009", "\u3000", "\x85", "\x00", "\x1c", "\x1f", "\u200b",
    "\ufeff", "\U0001F600", "A", "b", "c.", "D!", "e?", "f,", "g;", "h:",
]


def random_text(generator: random.Random) -> str:
    return "".join(generator.choice(PIECES) + generator.choice(["", " ", ""]) for _ in range(generator.randint(0, 40)))


@pytest.mark.parametrize("settings", [TokenizerSettings(), TokenizerSettings(lowercase=False, html_breaks=False),
                                      TokenizerSettings(max_tokens=7, truncate="head+tail")])
def test_chunk_cache_gives_spacys_tokens_on_awkward_strings(settings):
    generator = random.Random(13)
    texts = [random_text(generator) for _ in range(int(os.environ.get("FUZZ_TEXTS", "3000")))]
    fast = Tokenizer(settings)
    expected = Tokenizer(settings).tokenize_with_spacy(texts)
    assert fast.tokenize_many(texts) == expected  # cold: every chunk new
    assert fast.tokenize_many(texts) == expected  # warm: every chunk remembered
    assert any(len(tokens) > 3 for tokens in expected)


def test_chunk_cache_gives_spacys_tokens_on_the_samples():
    texts = [json.loads(line)["text"] for line in (SAMPLES / "textcat" / "train.jsonl").read_text().splitlines()]
    texts += (SAMPLES / "lm" / "train.txt").read_text().splitlines()
    for settings in (TokenizerSettings(), TokenizerSettings(lowercase=False, max_tokens=50, truncate="tail")):
        assert Tokenizer(settings).tokenize_many(texts) == Tokenizer(settings).tokenize_with_spacy(texts)


def test_the_chunk_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(tokenize, "CHUNK_CACHE_SIZE", 10)
    tokenizer = Tokenizer()
    texts = [f"word{i} other{i}!" for i in range(50)]
    assert tokenizer.tokenize_many(texts) == Tokenizer().tokenize_with_spacy(texts)
    assert len(tokenizer._chunks) == 10  # full, and no larger
    assert "word0" in tokenizer._chunks  # it keeps the chunks it met first
    assert tokenizer.tokenize_many(texts) == Tokenizer().tokenize_with_spacy(texts)


def test_threads_sharing_a_tokenizer_get_spacys_tokens(monkeypatch):
    """The service and the Predictor's prefetch thread may tokenise at once, with a full memory too."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(tokenize, "CHUNK_CACHE_SIZE", 50)  # full after a few texts
    generator = random.Random(5)
    texts = [random_text(generator) for _ in range(400)]
    expected = Tokenizer().tokenize_with_spacy(texts)
    shared = Tokenizer()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda part: shared.tokenize_many(texts[part::4]), range(4)))
    assert [tokens for part in range(4) for tokens in results[part]] == [expected[i] for part in range(4)
                                                                         for i in range(part, len(texts), 4)]
