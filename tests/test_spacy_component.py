"""The spaCy components against real tiny model directories and real spaCy: annotations match the
Predictor, ``nlp.pipe`` batches through it, and a saved pipeline loads in a fresh process (no
``import toolkit``) after the original model directories are gone."""

from __future__ import annotations

import gc
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example

from toolkit import Predictor
from toolkit.errors import ModelDirError
from toolkit.spacy_component import MODEL_SUBDIR, ClassifyComponent, TagComponent, TranslateComponent

NER_TEXTS = [
    "Peter Blackburn visited Bonn in Germany .",
    "EU rejects German call to boycott British lamb .",
    "Ajax Amsterdam dropped two points at home against Vitesse Arnhem .",
    "The  European Commission said on Thursday it disagreed with German advice.\n\nLONDON 1996-08-30",
    "Nadim Ladki reported from AL-AIN , United Arab Emirates .",
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria .",
]
REVIEWS = [
    "I was smiling the whole way through. Pure, warm entertainment.",
    "Nothing works as advertised. Poor design and even poorer build.",
    "Slow, silly and badly written. A huge disappointment.",
    "Comfortable, supportive and stylish.",
]
GERMAN = ["Ein Hund läuft über den Strand.", "Zwei Kinder spielen im Park.", "Eine Frau liest ein Buch."]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared CPU
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_copies(tmp_path_factory, textcat_model_dir: Path, ner_model_dir: Path) -> dict[str, Path]:
    """Private copies of the session's model directories (the save/load test deletes them)."""
    root = tmp_path_factory.mktemp("spacy_models")
    return {name: Path(shutil.copytree(source, root / name))
            for name, source in (("textcat", textcat_model_dir), ("ner", ner_model_dir))}


@pytest.fixture(scope="module")
def nlp(model_copies: dict[str, Path]) -> spacy.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_ner", config={"model": str(model_copies["ner"]), "device": "cpu", "spans_key": "bilstm"})
    nlp.add_pipe("bilstm_textcat", config={"model": str(model_copies["textcat"]), "device": "cpu"})
    return nlp


def entities_of(doc: Doc) -> list[tuple[str, int, int]]:
    return [(ent.label_, ent.start_char, ent.end_char) for ent in doc.ents]


def test_factories_are_registered_entry_points():
    names = {entry.name for entry in importlib.metadata.entry_points(group="spacy_factories")}
    assert {"bilstm_textcat", "bilstm_ner", "bilstm_translate", "bilstm_lm"} <= names, (
        "entry points not installed; run `pip install -c constraints.txt --no-deps -e .`")


def test_textcat_fills_cats_with_exclusive_probabilities(nlp, model_copies):
    predictor = Predictor.load(model_copies["textcat"], device="cpu")
    expected = predictor.predict_proba(REVIEWS)
    for text, row in zip(REVIEWS, expected.tolist(), strict=True):
        doc = nlp(text)
        assert list(doc.cats) == predictor.labels == list(nlp.get_pipe("bilstm_textcat").labels)
        assert math.isclose(sum(doc.cats.values()), 1.0, abs_tol=1e-5)
        assert [doc.cats[label] for label in predictor.labels] == pytest.approx(row, abs=1e-6)
    assert nlp("   ").cats == {}  # nothing to classify


def test_ner_sets_doc_ents_at_the_predictors_character_offsets(nlp, model_copies):
    predictor = Predictor.load(model_copies["ner"], device="cpu")
    predicted = predictor.predict(NER_TEXTS)
    found = 0
    for text, expected in zip(NER_TEXTS, predicted, strict=True):
        doc = nlp(text)
        assert entities_of(doc) == [(e.label, e.start, e.end) for e in expected.entities]
        assert [ent.text for ent in doc.ents] == [e.text for e in expected.entities]
        assert doc.spans["bilstm"].attrs["scores"] == pytest.approx([e.confidence for e in expected.entities],
                                                                    abs=1e-5)
        found += len(doc.ents)
    assert found > 0, "the tiny tagger found no entities at all; the comparison would be vacuous"
    assert set(nlp.get_pipe("bilstm_ner").labels) == set(predictor.entity_types)
    assert nlp(" \n ").ents == ()


def test_ner_tags_the_docs_own_tokens(nlp):
    """A Doc tokenised differently from the model's tokenizer is tagged on its own tokens."""
    words = ["Peter", "Blackburn", "visited", "Bonn", "in", "Germany", "."]
    doc = nlp(Doc(nlp.vocab, words=words, spaces=[True, True, True, True, True, False, False]))
    tagged = nlp.get_pipe("bilstm_ner").predictor.tag_tokens([words])[0]
    assert [(ent.start, ent.end, ent.label_) for ent in doc.ents] == [(s, e, k) for s, e, k, _ in tagged.spans]


def test_pipe_batches_through_the_predictor_and_matches_single_calls(nlp):
    singles = [nlp(text) for text in NER_TEXTS + REVIEWS]
    ner, textcat = nlp.get_pipe("bilstm_ner"), nlp.get_pipe("bilstm_textcat")
    calls = {"tag_tokens": 0, "predict_proba": 0}

    def counting(obj, method):
        original = getattr(obj, method)

        def wrapper(*args, **kwargs):
            calls[method] += 1
            return original(*args, **kwargs)

        return wrapper

    ner.predictor.tag_tokens = counting(ner.predictor, "tag_tokens")
    textcat.predictor.predict_proba = counting(textcat.predictor, "predict_proba")
    try:
        batched = list(nlp.pipe(NER_TEXTS + REVIEWS, batch_size=4))
    finally:
        del ner.predictor.tag_tokens, textcat.predictor.predict_proba
    assert calls == {"tag_tokens": 3, "predict_proba": 3}  # 10 docs in batches of 4
    for single, doc in zip(singles, batched, strict=True):
        assert entities_of(doc) == entities_of(single)
        assert doc.cats == pytest.approx(single.cats, abs=1e-6)


def test_predict_has_no_side_effects(nlp):
    ner, textcat = nlp.get_pipe("bilstm_ner"), nlp.get_pipe("bilstm_textcat")
    docs = [nlp.make_doc(text) for text in NER_TEXTS[:3]]
    entity_predictions, cat_predictions = ner.predict(docs), textcat.predict(docs)
    assert all(doc.ents == () and doc.cats == {} and "bilstm" not in doc.spans for doc in docs)
    ner.set_annotations(docs, entity_predictions)
    textcat.set_annotations(docs, cat_predictions)
    assert [entities_of(doc) for doc in docs] == [entities_of(nlp(text)) for text in NER_TEXTS[:3]]
    assert all(doc.cats for doc in docs)


def test_existing_entities_win_unless_overwrite_ents(model_copies):
    text = "Peter Blackburn visited Bonn in Germany ."
    plain = spacy.blank("en")
    plain.add_pipe("bilstm_ner", config={"model": str(model_copies["ner"]), "device": "cpu"})
    predicted = plain(text).ents
    assert predicted, "the tiny tagger found no entity in the test sentence"
    first = predicted[0]
    for overwrite in (False, True):
        nlp = spacy.blank("en")
        nlp.add_pipe("bilstm_ner", config={"model": str(model_copies["ner"]), "device": "cpu",
                                           "overwrite_ents": overwrite})
        doc = nlp.make_doc(text)
        doc.ents = [Span(doc, first.start, first.end + 1, label="GOLD")]  # overlaps the first prediction
        doc = nlp(doc)
        labels = [(ent.start, ent.end, ent.label_) for ent in doc.ents]
        rest = [(ent.start, ent.end, ent.label_) for ent in predicted[1:] if ent.start >= first.end + 1]
        if overwrite:
            assert labels[0] == (first.start, first.end, first.label_)
        else:
            assert labels == [(first.start, first.end + 1, "GOLD"), *rest]


def test_nlp_evaluate_uses_spacy_scorers(nlp):
    doc = nlp.make_doc("Peter Blackburn visited Bonn .")
    example = Example.from_dict(doc, {"entities": [(0, 15, "PER"), (24, 28, "LOC")],
                                      "cats": {"pos": 1.0, "neg": 0.0}})
    scores = nlp.evaluate([example])
    assert {"ents_f", "ents_p", "ents_r", "cats_score"} <= set(scores)


def test_errors_name_the_problem_and_the_fix(model_copies, tmp_path):
    nlp = spacy.blank("en")
    with pytest.raises(ModelDirError, match=r"holds a 'tag' model.*needs a 'classify'.*add_pipe\('bilstm_ner'"):
        nlp.add_pipe("bilstm_textcat", config={"model": str(model_copies["ner"])})
    with pytest.raises(ModelDirError, match=r"holds a 'classify' model.*add_pipe\('bilstm_textcat'"):
        nlp.add_pipe("bilstm_ner", config={"model": str(model_copies["textcat"])})
    with pytest.raises(ModelDirError, match=r"needs a model directory.*config=\{'model'"):
        nlp.add_pipe("bilstm_ner")
    with pytest.raises(ModelDirError, match=r"meta\.json is missing"):
        nlp.add_pipe("bilstm_ner", config={"model": str(tmp_path)})
    # A directory that does not exist is only an error on use: spacy.load re-creates components from the
    # saved config (naming the original directory) before from_disk points them at the saved copy.
    nlp.add_pipe("bilstm_ner", config={"model": str(tmp_path / "nowhere")})
    with pytest.raises(ModelDirError, match="model directory not found"):
        nlp("Peter visited Bonn .")
    with pytest.raises(ModelDirError, match=r"was not written by bilstm_ner\.to_disk"):
        nlp.get_pipe("bilstm_ner").from_disk(tmp_path)
    assert nlp.pipe_names == ["bilstm_ner"]


def test_repeated_prediction_accumulates_nothing(nlp):
    """spaCy #11596: nothing may grow with the number of calls (component state, vocab, Python heap)."""
    texts = NER_TEXTS + REVIEWS
    ner, textcat = nlp.get_pipe("bilstm_ner"), nlp.get_pipe("bilstm_textcat")
    for _ in range(2):  # warm-up: first-call allocations, interned strings
        list(nlp.pipe(texts))
    state = {name: sorted(vars(component)) for name, component in (("ner", ner), ("textcat", textcat))}
    strings, lexemes = len(nlp.vocab.strings), len(nlp.vocab)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(8):
            for doc in nlp.pipe(texts, batch_size=4):
                assert abs(sum(doc.cats.values()) - 1) < 1e-5  # every doc really went through both components
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"Python heap grew by {grown} bytes over 8 rounds"
    assert (len(nlp.vocab.strings), len(nlp.vocab)) == (strings, lexemes)
    assert state == {name: sorted(vars(component)) for name, component in (("ner", ner), ("textcat", textcat))}


def test_translate_writes_the_doc_extension(translate_model_dir):
    nlp = spacy.blank("de")
    nlp.add_pipe("bilstm_translate", config={"model": str(translate_model_dir), "device": "cpu", "beam_size": 2})
    nlp.add_pipe("bilstm_translate", name="greedy",  # a second component reuses the extension
                 config={"model": str(translate_model_dir), "device": "cpu", "beam_size": 1, "extension": "greedy"})
    expected = Predictor.load(translate_model_dir, device="cpu").predict(GERMAN, beam_size=2)
    docs = list(nlp.pipe(GERMAN))
    assert [doc._.translation for doc in docs] == [result.translation for result in expected]
    assert all(isinstance(doc._.greedy, str) for doc in docs)
    assert nlp(" ")._.translation is None
    Doc.set_extension("bilstm_read_only", getter=lambda doc: "x", force=True)
    try:
        with pytest.raises(ValueError, match="already registered as a read-only property"):
            nlp.add_pipe("bilstm_translate", name="bad",
                         config={"model": str(translate_model_dir), "extension": "bilstm_read_only"})
    finally:
        Doc.remove_extension("bilstm_read_only")
    with pytest.raises(ModelDirError, match=r"holds a 'translate' model.*add_pipe\('bilstm_translate'"):
        nlp.add_pipe("bilstm_ner", config={"model": str(translate_model_dir)})


def test_saved_pipeline_is_self_contained_and_loads_in_a_fresh_process(textcat_model_dir, ner_model_dir,
                                                                        translate_model_dir, tmp_path):
    originals = {name: Path(shutil.copytree(source, tmp_path / name)) for name, source in
                 (("ner", ner_model_dir), ("textcat", textcat_model_dir), ("translate", translate_model_dir))}
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_ner", config={"model": str(originals["ner"])})
    nlp.add_pipe("bilstm_textcat", config={"model": str(originals["textcat"])})
    nlp.add_pipe("bilstm_translate", config={"model": str(originals["translate"]), "beam_size": 1})
    texts = NER_TEXTS[:3] + REVIEWS[:2]
    expected = [{"ents": entities_of(doc), "cats": doc.cats, "translation": doc._.translation}
                for doc in nlp.pipe(texts)]
    saved = tmp_path / "pipeline"
    nlp.to_disk(saved)
    nlp.to_disk(saved)  # saving again replaces the copies cleanly
    for name in ("bilstm_ner", "bilstm_textcat", "bilstm_translate"):
        assert sorted(p.name for p in (saved / name).iterdir()) == [MODEL_SUBDIR]
    for original in originals.values():
        shutil.rmtree(original)
    # Whatever is at the original paths now, the saved pipeline reads its own copies: an empty folder where
    # the NER model was, a model of another task where the classifier was, nothing where the translator was.
    originals["ner"].mkdir()
    shutil.copytree(translate_model_dir, originals["textcat"])

    code = textwrap.dedent(f"""
        import json, sys
        import spacy
        nlp = spacy.load({str(saved)!r})
        docs = list(nlp.pipe({texts!r}))
        print(json.dumps({{"pipes": nlp.pipe_names, "results": [
            {{"ents": [[e.label_, e.start_char, e.end_char] for e in d.ents], "cats": d.cats,
              "translation": d._.translation}} for d in docs]}}))
    """)
    assert "toolkit" not in code
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the installed entry points must find the package, not the test's sys.path
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["pipes"] == ["bilstm_ner", "bilstm_textcat", "bilstm_translate"]
    for want, got in zip(expected, loaded["results"], strict=True):
        assert [tuple(e) for e in got["ents"]] == want["ents"]
        assert got["cats"] == pytest.approx(want["cats"], abs=1e-6)
        assert got["translation"] == want["translation"]

    reloaded = spacy.load(saved)  # in this process too; components point at the saved copies
    assert isinstance(reloaded.get_pipe("bilstm_ner"), TagComponent)
    assert isinstance(reloaded.get_pipe("bilstm_textcat"), ClassifyComponent)
    assert isinstance(reloaded.get_pipe("bilstm_translate"), TranslateComponent)
    assert reloaded.get_pipe("bilstm_ner").model_path == saved / "bilstm_ner" / MODEL_SUBDIR
    reloaded.to_disk(saved)  # saving onto the copies it was loaded from is a no-op, not a self-copy
    assert entities_of(reloaded(texts[0])) == expected[0]["ents"]


def test_lm_sets_the_perplexity_of_each_doc(lm_model_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_lm", config={"model": str(lm_model_dir)})
    texts = ["the cat runs behind the barn .", "barn the behind runs cat the .", "   "]
    docs = list(nlp.pipe(texts))
    want = Predictor.load(lm_model_dir, device="cpu").score(texts[:2])
    assert [doc._.perplexity for doc in docs[:2]] == pytest.approx([w.perplexity for w in want], rel=1e-5)
    assert docs[2]._.perplexity is None  # a blank doc has nothing to score
