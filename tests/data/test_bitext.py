"""Parallel-text readers, subword vocabularies and the translation DataModule."""

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch

from toolkit.data.bitext import read_aligned, read_bitext, target_path
from toolkit.data.subword import BOS_ID, EOS_ID, PAD_ID, SubwordSettings, SubwordTokenizer, train_subword
from toolkit.data.translate import TranslateData, collate_bitext
from toolkit.errors import ConfigError, DataError

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "translate"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("source,target", [
    ("data/val.de", "data/val.en"), ("val.de.gz", "val.en.gz"), ("a.b.de", "a.b.en"), ("test.src", "test.tgt"),
])
def test_target_path_swaps_the_language_suffix(source, target):
    assert target_path(source, "de", "en") == Path(target)


@pytest.mark.parametrize("name", ["val.txt", "val", "val.fr.gz"])
def test_target_path_without_a_language_suffix_is_a_clear_error(name):
    with pytest.raises(DataError, match=r"does not end in \.de or \.src"):
        target_path(name)


def test_reads_the_bundled_sample_as_plain_text_gzip_and_jsonl(tmp_path):
    plain = read_bitext(SAMPLES / "dev.de")
    assert len(plain) == 60 and plain[0].source.startswith("Ein Hund") and plain[0].target.startswith("A dog")
    for suffix in ("de", "en"):
        with open(SAMPLES / f"dev.{suffix}", "rb") as raw, gzip.open(tmp_path / f"dev.{suffix}.gz", "wb") as packed:
            shutil.copyfileobj(raw, packed)
    assert read_bitext(tmp_path / "dev.de.gz") == plain
    jsonl = read_bitext(SAMPLES / "dev.jsonl")
    assert [(e.source, e.target) for e in jsonl] == [(e.source, e.target) for e in plain]


def test_misaligned_files_name_both_files_and_both_counts(tmp_path):
    source = write(tmp_path / "train.de", ["Ein Hund.", "Eine Katze.", "Ein Baum."])
    target = write(tmp_path / "train.en", ["A dog.", "A cat."])
    with pytest.raises(DataError) as caught:
        read_bitext(source)
    message = str(caught.value)
    assert str(source) in message and str(target) in message
    assert "has 3 lines" in message and "has 2 lines" in message


def test_missing_target_file_is_named(tmp_path):
    source = write(tmp_path / "only.de", ["Ein Hund."])
    with pytest.raises(DataError, match=r"only\.en: file not found"):
        read_bitext(source)


def test_empty_line_is_reported_with_file_and_line(tmp_path):
    write(tmp_path / "x.de", ["Ein Hund.", "Eine Katze.", "Ein Baum."])
    target = write(tmp_path / "x.en", ["A dog.", "  ", "A tree."])
    with pytest.raises(DataError, match=rf"{target}:2: line is empty"):
        read_aligned(tmp_path / "x.de", target)


def test_jsonl_errors_name_the_line_and_field(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"source": "Ein Hund.", "target": "A dog."}) + "\n"
                    + json.dumps({"source": "Eine Katze."}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: missing target field 'target'"):
        read_bitext(path)


@pytest.fixture(scope="module")
def sample_texts():
    return [e.source for e in read_bitext(SAMPLES / "train.de")] + [e.target for e in read_bitext(
        SAMPLES / "train.de")]


@pytest.mark.parametrize("model", ["bpe", "unigram"])
def test_subword_round_trip_is_exact_and_special_ids_are_fixed(model, sample_texts):
    tokenizer = train_subword(sample_texts, SubwordSettings(model=model, vocab_size=600))
    assert tokenizer.vocab_size <= 600
    assert [tokenizer.tokenizer.token_to_id(t) for t in ("<pad>", "<unk>", "<s>", "</s>")] == [0, 1, 2, 3]
    texts = [*sample_texts[:20], "Zwei Mädchen laufen über die Straße, und der Hund bellt!"]
    ids = tokenizer.encode(texts)
    assert all(min(seq) >= 1 for seq in ids)
    assert tokenizer.decode(ids) == texts  # detokenised output equals the input text
    reloaded = SubwordTokenizer.from_json(json.loads(json.dumps(tokenizer.to_json())))
    assert reloaded.encode(texts) == ids


def test_subword_training_is_deterministic_and_validated(sample_texts):
    settings = SubwordSettings(vocab_size=500)
    assert train_subword(sample_texts, settings).to_json() == train_subword(sample_texts, settings).to_json()
    with pytest.raises(ConfigError, match="subword model"):
        SubwordSettings(model="wordpiece").validate()


def test_collate_adds_bos_and_eos_and_pads():
    batch = collate_bitext([(torch.tensor([5, 6, 7]), torch.tensor([8, 9]), "a b"),
                              (torch.tensor([5]), torch.tensor([10, 11, 12]), "c")])
    assert batch["source"].tolist() == [[5, 6, 7], [5, PAD_ID, PAD_ID]]
    assert batch["source_lengths"].tolist() == [3, 1]
    assert batch["target_in"].tolist() == [[BOS_ID, 8, 9, PAD_ID], [BOS_ID, 10, 11, 12]]
    assert batch["target_out"].tolist() == [[8, 9, EOS_ID, PAD_ID], [10, 11, 12, EOS_ID]]
    assert batch["references"] == ["a b", "c"]


def test_datamodule_builds_vocab_from_training_data_and_exports_it():
    data = TranslateData(str(SAMPLES / "train.de"), str(SAMPLES / "dev.jsonl"), vocab_size=700, batch_size=8)
    info = data.data_info
    assert info.source_vocab_size == info.target_vocab_size <= 700
    data.setup("fit")
    assert len(data.datasets["train"]) == 300 and len(data.datasets["val"]) == 60
    batch = next(iter(data.val_dataloader()))
    assert batch["source"].shape[0] == len(batch["references"])
    assert data.detokenize(data.datasets["val"].targets[:1]) == [data.datasets["val"].references[0]]
    side = data.export()
    assert set(side.json_files) == {"tokenizer.json"} and side.labels is None
    assert side.tokenizer["files"] == {"source": "tokenizer.json", "target": "tokenizer.json"}
    assert side.record["files"][1].endswith("train.en") and len(side.record["sha256"]) == 64


def test_separate_vocabularies_and_length_filter():
    data = TranslateData(str(SAMPLES / "train.de"), dev_fraction=0.1, joint_vocab=False, vocab_size=400, max_length=8)
    data.setup("fit")
    assert data.source_tokenizer is not data.target_tokenizer
    assert set(data.export().json_files) == {"source_tokenizer.json", "target_tokenizer.json"}
    assert len(data.datasets["val"]) == 30
    kept = data.datasets["train"]
    assert all(len(s) <= 8 and len(t) <= 8 for s, t in zip(kept.sources, kept.targets, strict=True))
    assert data._sizes["dropped_long_pairs"] > 0
