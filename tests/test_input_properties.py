"""Property-based tests: any string Python can hold gets a clear answer from the Predictor and the spaCy components.

The rule (docs/batch.md, "Odd characters"): a text with a lone surrogate, or nothing but whitespace and control
characters, or longer than ``max_chars`` (unless ``truncate``), is refused with an InputError naming the first such
text; every other text gets a result, in order. spaCy itself cannot hold a lone surrogate in a Doc (its string
store encodes UTF-8), so the spaCy property covers every other string.
"""

from __future__ import annotations

import re

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit import Predictor
from toolkit.data.textrules import CONTROL
from toolkit.errors import InputError

MAX_CHARS = 120
TASKS = ("classify", "tag", "translate")

any_string = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30)  # surrogates too
odd = st.sampled_from(["", " ", "\x00", "\x1b[0m", "\ufeff", "\u200b", "\u2028", "<br />", "a" * (MAX_CHARS + 5),
                       "Bonn " * 30, "x \ud800 y", "\udfff", "Peter Blackburn visited Bonn .", "Ein Hund läuft."])
texts = st.lists(any_string | odd, min_size=1, max_size=6)


def expected_problem(text: str, truncate: bool) -> bool:
    """The documented rule, written out independently of the code under test."""
    surrogate = any(0xD800 <= ord(char) <= 0xDFFF for char in text)
    blank = not CONTROL.sub(" ", text).strip()
    return surrogate or blank or (not truncate and len(text) > MAX_CHARS)


@pytest.fixture(scope="module")
def predictors(textcat_model_dir, ner_model_dir, translate_model_dir):
    dirs = {"classify": textcat_model_dir, "tag": ner_model_dir, "translate": translate_model_dir}
    return {task: Predictor.load(path, device="cpu", max_chars=MAX_CHARS) for task, path in dirs.items()}


@pytest.mark.parametrize("task", TASKS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(batch=texts, truncate=st.booleans())
def test_predictor_answers_every_text_or_names_the_first_it_refuses(predictors, task, batch, truncate):
    predictor = predictors[task]
    predictor.truncate = truncate
    try:
        refused = [expected_problem(text, truncate) for text in batch]
        if any(refused):
            with pytest.raises(InputError, match=rf"^text {refused.index(True)} "):
                predictor.predict(batch)
            return
        results = predictor.predict(batch)
    finally:
        predictor.truncate = False
    assert len(results) == len(batch)
    for text, result in zip(batch, results, strict=True):
        assert result.input_truncated == (len(text) > MAX_CHARS)
        if task == "translate":
            assert result.source == text
        elif task == "tag":
            assert all(text[e.start:e.end] == e.text and e.end <= MAX_CHARS for e in result.entities)
        else:
            assert abs(sum(result.probabilities.values()) - 1) < 1e-5


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(sentences=st.lists(st.lists(any_string | odd, max_size=5), min_size=1, max_size=4))
def test_tag_tokens_answers_or_names_the_sentence(predictors, sentences):
    tagger = predictors["tag"]
    bad = [not tokens or any(re.search("[\ud800-\udfff]", token) for token in tokens)
           or sum(map(len, tokens)) + len(tokens) - 1 > MAX_CHARS for tokens in sentences]
    if any(bad):
        with pytest.raises(InputError, match=rf"^sentence {bad.index(True)} "):
            tagger.tag_tokens(sentences)
        return
    results = tagger.tag_tokens(sentences)
    assert [len(result.tags) for result in results] == [len(tokens) for tokens in sentences]


@pytest.fixture(scope="module")
def nlp(textcat_model_dir, ner_model_dir):
    pipeline = spacy.blank("en")
    pipeline.add_pipe("bilstm_ner", config={"model": str(ner_model_dir), "max_chars": MAX_CHARS})
    pipeline.add_pipe("bilstm_textcat", config={"model": str(textcat_model_dir), "max_chars": MAX_CHARS})
    return pipeline


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.text(max_size=40) | odd.filter(lambda t: "\ud800" not in t and "\udfff" not in t),
                      min_size=1, max_size=6))
def test_spacy_components_annotate_every_doc_or_name_the_too_long_one(nlp, batch):
    if any(len(text) > MAX_CHARS for text in batch):
        with pytest.raises(InputError, match="over the limit"):
            list(nlp.pipe(batch))
        return
    for text, doc in zip(batch, nlp.pipe(batch), strict=True):
        assert doc.text == text
        if CONTROL.sub(" ", text).strip():
            assert abs(sum(doc.cats.values()) - 1) < 1e-5
        else:
            assert doc.cats == {}
        assert all(0 <= ent.start_char < ent.end_char <= len(text) for ent in doc.ents)


def test_a_lone_surrogate_never_reaches_a_spacy_component():
    """spaCy refuses the string itself, before any component runs (documented in docs/spacy.md)."""
    with pytest.raises(UnicodeEncodeError):
        spacy.blank("en")("x \ud800 y")
