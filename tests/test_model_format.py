"""Model directories of every format this toolkit ever wrote still load and predict as they did.

``tests/fixtures/model_dirs_v1`` holds tiny model directories of each task written by toolkit 0.1.0 (meta.json
format 1) and ``expected.json`` their predictions at the time; the format-2 reader upgrades them on load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import spacy

from tests.conftest import ROOT
from toolkit import Predictor
from toolkit.artifact import read_meta
from toolkit.meta import FORMAT_VERSION, MIGRATIONS, upgrade

V1 = ROOT / "tests/fixtures/model_dirs_v1"
EXPECTED = json.loads((V1 / "expected.json").read_text())


@pytest.mark.parametrize("task", ["classify", "tag", "translate"])
def test_a_format_1_directory_loads_and_predicts_as_before(task):
    assert json.loads((V1 / task / "meta.json").read_text())["format_version"] == 1
    predictor = Predictor.load(V1 / task, device="cpu")
    assert predictor.meta.format_version == FORMAT_VERSION == 2
    options = {"beam_size": 2} if task == "translate" else {}
    results = [r.to_dict() for r in predictor.predict(EXPECTED[task]["texts"], **options)]
    for got, want in zip(results, EXPECTED[task]["results"], strict=True):
        if task == "classify":
            assert got["label"] == want["label"]
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
        else:
            assert {k: v for k, v in got.items() if k != "score"} == {k: v for k, v in want.items() if k != "score"}


def test_the_migration_keeps_the_tag_scheme_once_and_adds_the_new_sections():
    raw = json.loads((V1 / "tag/meta.json").read_text())
    assert "input_scheme" in raw["tokenizer"] and "input_scheme" in raw["model_config"]  # format 1: twice
    upgraded = upgrade(raw, "meta.json")
    assert "input_scheme" not in upgraded["tokenizer"] and upgraded["model_config"]["input_scheme"] == "iob1"
    assert (upgraded["provenance"], upgraded["init_from"], upgraded["backends"]) == ({}, [], {})
    assert raw["format_version"] == 1  # the migration works on a copy
    assert sorted(MIGRATIONS) == list(range(1, FORMAT_VERSION))  # every older format has its upgrade


def test_spacy_and_the_batch_job_read_format_1_too(tmp_path):
    copy = Path(shutil.copytree(V1 / "tag", tmp_path / "tag"))
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_ner", config={"model": str(copy)})
    doc = nlp(EXPECTED["tag"]["texts"][0])
    assert [t.text for t in doc] == EXPECTED["tag"]["results"][0]["tokens"]
    assert read_meta(copy).tokenizer == {"lang": "en", "lowercase_words": True, "max_word_chars": 30}
