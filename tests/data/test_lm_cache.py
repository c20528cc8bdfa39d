"""The language model's corpus cache and parallel tokenising: same streams as tokenising in this process, every time."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import struct

import pytest
import torch
from safetensors.torch import load, save

from tests.conftest import SAMPLES, run_bilstm
from toolkit.data import lm_text
from toolkit.data.lm import LMData
from toolkit.data.lm_cache import INDEX_FILE, STREAMS_FILE, TokenisedCorpus, load_corpus, save_corpus
from toolkit.data.vocab import LM_SPECIALS, Vocab
from toolkit.errors import ConfigError, DataError

TEXTCAT = SAMPLES / "textcat"


@pytest.fixture(autouse=True)
def corpus_files(tmp_path):
    shutil.copy(TEXTCAT / "train.jsonl", tmp_path / "train.jsonl")
    shutil.copy(TEXTCAT / "unlabelled.txt", tmp_path / "unlabelled.txt")


def _data(tmp_path, **settings) -> LMData:
    """The sample's pretraining corpus: labelled reviews minus the classifier's dev split, and unlabelled lines."""
    train, unlabelled = tmp_path / "train.jsonl", tmp_path / "unlabelled.txt"
    options = dict(train_file=[str(train), str(unlabelled)], exclude_dev_of=str(train), exclude_dev_fraction=0.2,
                   split="spacy", lowercase=True, max_vocab=500, dev_fraction=0.1)
    data = LMData(**{**options, **settings})
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
    with pytest.raises(ConfigError, match=r"does not match the SHA-256 corpus\.json records .*delete the directory"):
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
        LMData(train_file=str(tmp_path / "train.jsonl"), tokenize_workers=0)


def test_a_cache_path_that_cannot_be_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "a_file").write_text("not a cache")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        _data(tmp_path, corpus_cache=str(tmp_path / "a_file"))
    with pytest.raises(ConfigError, match="cannot be written"):
        _data(tmp_path, corpus_cache=str(tmp_path / "a_file" / "below"))


# --- a cache edited by hand is checked like a model directory: one line naming the file, never a traceback ---------

LM = SAMPLES / "lm"


def _lm_data(cache, **settings) -> LMData:
    """The tiny whitespace sample through the cache ``cache`` (tokenising it takes milliseconds)."""
    data = LMData(train_file=str(LM / "train.txt"), dev_file=str(LM / "dev.txt"), split="whitespace",
                             corpus_cache=str(cache), **settings)
    data.setup("fit")
    return data


@pytest.fixture
def cache(tmp_path):
    """A valid cache of the whitespace sample, written by the toolkit itself (to be tampered with)."""
    made = _lm_data(tmp_path / "lm_cache")
    assert made.streams["train"].max() > 2  # the vocabulary-shrinking case below needs ids beyond the specials
    return tmp_path / "lm_cache"


def _edit_index(cache, edit) -> None:
    index = json.loads((cache / INDEX_FILE).read_text(encoding="utf-8"))
    edit(index)
    (cache / INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")


def _replace_streams(cache, data: bytes) -> None:
    """New ``corpus.safetensors`` bytes, with corpus.json's SHA-256 made to match (as the user did)."""
    (cache / STREAMS_FILE).write_bytes(data)
    _edit_index(cache, lambda index: index.update(streams_sha256=hashlib.sha256(data).hexdigest()))


def _raw_safetensors(header: dict, payload: bytes) -> bytes:
    """A safetensors file from its parts (8-byte little-endian header length, JSON header, data)."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def _refused(cache, file: str, pattern: str) -> None:
    """Reading ``cache`` is a one-line ConfigError naming ``file``, matching ``pattern``, saying how to rebuild."""
    with pytest.raises(ConfigError) as caught:
        _lm_data(cache)
    message = str(caught.value)
    assert "\n" not in message
    assert f"corpus cache file {cache / file} " in message
    assert message.endswith(f"delete the directory {cache} or point data.corpus_cache at another one to tokenise "
                            "the corpus again")
    assert re.search(pattern, message), message


def _vocab_size(cache) -> int:
    return len(json.loads((cache / INDEX_FILE).read_text())["vocab"]["tokens"])


def _out_of_range(streams, size):
    train = streams["train"].clone()
    train[7] = size  # one id past the vocabulary: an IndexError deep in the embedding otherwise
    return {**streams, "train": train}


STREAM_EDITS = {  # id → (edit of the tensors, given the vocabulary size; what the error says)
    "float ids": (lambda streams, size: {name: t.float() for name, t in streams.items()},
                  r"stores 'train' as torch\.float32, not the torch\.uint16 of a \d+-token vocabulary"),
    "int32 ids": (lambda streams, size: {**streams, "val": streams["val"].int()}, r"stores 'val' as torch\.int32"),
    "rank 2": (lambda streams, size: {**streams, "train": streams["train"][:4].view(2, 2)},
               r"has 'train' of shape \[2, 2\], corpus\.json records \[\d+\] tokens"),
    "shorter than recorded": (lambda streams, size: {**streams, "val": streams["val"][:-1]},
                              r"has 'val' of shape \[\d+\], corpus\.json records \[\d+\] tokens"),
    "id past the vocabulary": (_out_of_range, r"has ids 0\.\.(\d+) in 'train', outside the vocabulary's 0\.\.\d+"),
    "missing tensor": (lambda streams, size: {"train": streams["train"]}, r"lacks the streams \['val'\]"),
    "extra tensor": (lambda streams, size: {**streams, "weights": torch.zeros(3)},
                     r"holds unknown tensors \['weights'\]"),
}


@pytest.mark.parametrize("case", list(STREAM_EDITS))
def test_streams_of_the_wrong_dtype_shape_ids_or_names_are_refused(cache, case):
    edit, pattern = STREAM_EDITS[case]
    streams = load((cache / STREAMS_FILE).read_bytes())
    _replace_streams(cache, save(edit(streams, _vocab_size(cache))))
    _refused(cache, STREAMS_FILE, pattern)


def test_ids_are_checked_against_the_vocabulary_stored_in_the_cache(cache):
    _edit_index(cache, lambda index: index["vocab"].update(tokens=index["vocab"]["tokens"][:3]))
    _refused(cache, STREAMS_FILE, r"outside the vocabulary's 0\.\.2;")


def _header_of(data: bytes) -> bytes:
    return data[8 : 8 + struct.unpack("<Q", data[:8])[0]]


FILE_EDITS = {  # id → (new bytes from the valid ones; what the error says)
    "truncated": (lambda data: data[:-10], r"is not a readable safetensors file \(.*\)"),
    "empty": (lambda data: b"", r"is not a readable safetensors file \(.*header too small\)"),
    "header length": (lambda data: b"\xff" * 8 + data[8:], r"is not a readable safetensors file"),
    "header not JSON": (lambda data: data.replace(_header_of(data), b"{" + b" " * (len(_header_of(data)) - 1)),
                        r"is not a readable safetensors file \(.*JSON"),
    "dtype torch lacks": (lambda data: _raw_safetensors({"train": {"dtype": "F8_E8M0", "shape": [4],
                                                                   "data_offsets": [0, 4]}}, bytes(4)),
                          r"is not a readable safetensors file \('F8_E8M0'\)"),
}


@pytest.mark.parametrize("case", list(FILE_EDITS))
def test_a_truncated_or_malformed_safetensors_file_is_refused(cache, case):
    edit, pattern = FILE_EDITS[case]
    _replace_streams(cache, edit((cache / STREAMS_FILE).read_bytes()))
    _refused(cache, STREAMS_FILE, pattern)


def _set(**fields):
    return lambda index: index.update(fields)


def _set_vocab(**fields):
    return lambda index: index["vocab"].update(fields)


def _repeat_a_token(index):
    tokens = index["vocab"]["tokens"]
    tokens[5] = tokens[4]


INDEX_EDITS = {  # id → (edit of corpus.json, streams untouched; what the error says)
    "format 1": (_set(format=1), r"has cache format 1, this toolkit reads 2"),
    "no token counts": (lambda index: index.pop("stream_tokens"),
                        r"is not a valid corpus index: 'stream_tokens' must be an object of token counts"),
    "wrong field types": (_set(lines="many", excluded=-1, input_sha256=7),
                          r"'lines' must be an object of line counts, 'excluded' must be a count, 'input_sha256' "
                          r"must be a SHA-256 hex digest"),
    "settings not an object": (_set(settings=[1, 2]), r"'settings' must be an object"),
    "streams the settings do not make": (lambda index: index["stream_tokens"].pop("val"),
                                         r"records the streams \['train'\], these settings make \['train', 'val'\]"),
    "duplicate vocabulary entries": (_repeat_a_token, r"has a vocabulary with 1 tokens listed more than once \('"),
    "non-string tokens": (lambda index: index["vocab"]["tokens"].__setitem__(3, 3),
                          r"has a vocabulary whose 'tokens' is not a list of strings"),
    "tokens not a list": (_set_vocab(tokens={"<eos>": 0}), r"'tokens' is not a list of strings"),
    "classifier specials": (_set_vocab(specials=["<pad>", "<unk>"]),
                            r"does not start with the language model's \['<eos>', '<unk>'\]"),
}


@pytest.mark.parametrize("case", list(INDEX_EDITS))
def test_a_malformed_index_or_vocabulary_is_refused(cache, case):
    edit, pattern = INDEX_EDITS[case]
    _edit_index(cache, edit)
    _refused(cache, INDEX_FILE, pattern)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"], ids=["not JSON", "a list", "not UTF-8"])
def test_an_index_that_is_not_a_json_object_is_refused(cache, text):
    (cache / INDEX_FILE).write_bytes(text.encode("utf-8", "surrogateescape"))
    _refused(cache, INDEX_FILE, r"is not valid JSON \(|holds a JSON list, not the corpus index object")


def test_a_cache_without_its_streams_file_is_refused(cache):
    (cache / STREAMS_FILE).unlink()
    _refused(cache, STREAMS_FILE, r"is missing, though corpus\.json is there")


def test_a_vocabulary_past_uint16_is_stored_as_int32_and_checked_as_such(tmp_path):
    tokens = [*LM_SPECIALS, *(f"w{i}" for i in range(70_000))]
    streams = {"train": torch.arange(len(tokens)), "val": torch.tensor([0, len(tokens) - 1])}
    corpus = TokenisedCorpus(Vocab(tokens, LM_SPECIALS), streams, {"train": 1, "dev": 1}, 0, "0" * 64)
    text = tmp_path / "text.txt"
    text.write_text("made by hand\n")
    settings = {"train_file": [str(text)], "test_file": None}
    save_corpus(tmp_path / "big", settings, [str(text)], corpus)
    assert {t.dtype for t in load((tmp_path / "big" / STREAMS_FILE).read_bytes()).values()} == {torch.int32}
    loaded = load_corpus(tmp_path / "big", settings, [str(text)])
    assert torch.equal(loaded.streams["train"], streams["train"]) and loaded.vocab.tokens == tokens
    _replace_streams(tmp_path / "big", save({name: t.to(torch.uint16) for name, t in streams.items()}))
    with pytest.raises(ConfigError, match=r"stores 'train' as torch\.uint16, not the torch\.int32 of a 70002-token"):
        load_corpus(tmp_path / "big", settings, [str(text)])


def test_bilstm_fit_refuses_a_tampered_cache_with_one_line_and_no_traceback(cache, tmp_path):
    # the reported case: float ids with matching hashes trained a model on all-zero ids and exited 0
    _replace_streams(cache, save({name: t.float() for name, t in load((cache / STREAMS_FILE).read_bytes()).items()}))
    result = run_bilstm("fit", "--config", "configs/lm_sample.yaml", "--data.init_args.train_file",
                        str(LM / "train.txt"), "--data.init_args.dev_file", str(LM / "dev.txt"),
                        "--data.init_args.corpus_cache", str(cache), "--trainer.max_epochs", "1",
                        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("bilstm: error:")]
    assert errors == [f"bilstm: error: corpus cache file {cache / STREAMS_FILE} stores 'train' as torch.float32, "
                      f"not the torch.uint16 of a {_vocab_size(cache)}-token vocabulary; delete the directory {cache} "
                      "or point data.corpus_cache at another one to tokenise the corpus again"]
    assert not (tmp_path / "run" / "model").exists()
