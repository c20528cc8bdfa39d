"""The language model's corpus cache and parallel tokenising: same streams as tokenising in this process, every time."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from tests.conftest import SAMPLES
from toolkit.data import lm_text
from toolkit.data.lm import LanguageModelData
from toolkit.data.lm_cache import INDEX_FILE, STREAMS_FILE
from toolkit.errors import ConfigError, DataError

TEXTCAT = SAMPLES / "textcat"


@pytest.fixture(autouse=True)
def corpus_files(tmp_path):
    shutil.copy(TEXTCAT / "train.jsonl", tmp_path / "train.jsonl")
    shutil.copy(TEXTCAT / "unlabelled.txt", tmp_path / "unlabelled.txt")


def _data(tmp_path, **settings) -> LanguageModelData:
    """The sample's pretraining corpus: labelled reviews minus the classifier's dev split, and unlabelled lines."""
    train, unlabelled = tmp_path / "train.jsonl", tmp_path / "unlabelled.txt"
    options = dict(train_file=[str(train), str(unlabelled)], exclude_dev_of=str(train), exclude_dev_fraction=0.2,
                   split="spacy", lowercase=True, max_vocab=500, dev_fraction=0.1)
    data = LanguageModelData(**{**options, **settings})
    data.setup("fit")
    return data


def _no_tokenising(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("tokenised although the cache holds the corpus")

    monkeypatch.setattr(lm_text.ChunkTokenizer, "__call__", refuse)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_a_cached_corpus_gives_the_streams_and_vocabulary_of_tokenising(tmp_path, monkeypatch, direction):
    plain = _data(tmp_path, direction=direction)
    cache = tmp_path / "cache"
    first = _data(tmp_path, direction="forward", corpus_cache=str(cache))  # writes the cache
    assert (cache / INDEX_FILE).is_file() and (cache / STREAMS_FILE).is_file()
    _no_tokenising(monkeypatch)
    cached = _data(tmp_path, direction=direction, corpus_cache=str(cache))  # one cache serves both directions
    assert cached.vocab.tokens == plain.vocab.tokens == first.vocab.tokens
    for split in ("train", "val"):
        assert torch.equal(cached.streams[split], plain.streams[split])
        assert cached.streams[split].dtype == torch.int64
    assert cached.export().record == plain.export().record  # same files, fingerprint, token and line counts


def test_a_cache_made_with_other_settings_or_other_text_is_refused(tmp_path):
    cache = tmp_path / "cache"
    _data(tmp_path, corpus_cache=str(cache))
    with pytest.raises(ConfigError, match=r"max_vocab: cache 500, now 300"):
        _data(tmp_path, corpus_cache=str(cache), max_vocab=300)
    with (tmp_path / "unlabelled.txt").open("a", encoding="utf-8") as handle:
        handle.write("one more line the cache never saw\n")
    with pytest.raises(DataError, match="other contents"):
        _data(tmp_path, corpus_cache=str(cache))


def test_a_damaged_cache_is_refused_with_what_to_do(tmp_path):
    cache = tmp_path / "cache"
    _data(tmp_path, corpus_cache=str(cache))
    streams = cache / STREAMS_FILE
    streams.write_bytes(streams.read_bytes()[:-8])
    with pytest.raises(DataError, match=r"does not match corpus\.json"):
        _data(tmp_path, corpus_cache=str(cache))
    (cache / INDEX_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="delete the directory"):
        _data(tmp_path, corpus_cache=str(cache))


def test_the_cache_trains_where_the_text_is_absent(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    made = _data(tmp_path, corpus_cache=str(cache))
    (tmp_path / "train.jsonl").unlink()
    (tmp_path / "unlabelled.txt").unlink()
    _no_tokenising(monkeypatch)
    with caplog.at_level(logging.WARNING):
        cached = _data(tmp_path, corpus_cache=str(cache))
    assert "absent" in caplog.text
    assert torch.equal(cached.streams["train"], made.streams["train"])
    assert cached.export().record["sha256"] == made.export().record["sha256"]  # the recorded fingerprint
    index = json.loads((cache / INDEX_FILE).read_text())
    assert index["lines"] == made.lines and index["excluded"] == made.excluded == 80


def test_worker_processes_tokenise_exactly_like_one_process(tmp_path):
    one = _data(tmp_path)
    two = _data(tmp_path, tokenize_workers=2)
    assert two.vocab.tokens == one.vocab.tokens
    for split in ("train", "val"):
        assert torch.equal(two.streams[split], one.streams[split])
    with pytest.raises(ConfigError, match="tokenize_workers"):
        LanguageModelData(train_file=str(tmp_path / "train.jsonl"), tokenize_workers=0)


def test_a_cache_path_that_cannot_be_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "a_file").write_text("not a cache")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        _data(tmp_path, corpus_cache=str(tmp_path / "a_file"))
    with pytest.raises(ConfigError, match="cannot be written"):
        _data(tmp_path, corpus_cache=str(tmp_path / "a_file" / "below"))
