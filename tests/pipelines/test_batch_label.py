"""Batch labelling in-process: input order, errors file, formats, torn writes, refusing to resume."""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pipelines import checkpoint as checkpoint_module
from pipelines.checkpoint import Checkpoint, ResumeError
from pipelines.label import label_file
from pipelines.sources import InputReader, Position
from tests.conftest import SAMPLES
from toolkit import Predictor


def sample_texts(count: int) -> list[str]:
    """Short real-looking texts, each with a unique token (ids are what make spaCy's vocabulary grow)."""
    texts = [json.loads(line)["text"] for line in (SAMPLES / "textcat/train.jsonl").read_text().splitlines()]
    return [f"{texts[i % len(texts)]} #{i}" for i in range(count)]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread, as the subprocess tests run (two threads collapse on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


class Crash(Exception):
    """Stands in for a kill: raised from inside a commit, nothing is cleaned up."""


def crash_on_progress_write(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """The ``after``-th progress write fails *after* that window's output was written and fsynced (a torn commit)."""
    real = checkpoint_module.write_file_atomically
    calls = {"n": 0}

    def flaky(path: Path, data: bytes, **errors: str) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise Crash
        real(path, data, **errors)

    monkeypatch.setattr(checkpoint_module, "write_file_atomically", flaky)


def test_jsonl_out_matches_the_predictor_in_input_order(textcat_model_dir, tmp_path):
    texts = sample_texts(130)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts[:60]) + "\n\n   \n" + "\n".join(texts[60:]) + "\n")
    summary = label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=32, batch_size=8)
    assert summary["records"] == 130 and summary["errors"] == 0 and summary["errors_file"] is None
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = Predictor.load(textcat_model_dir, device="cpu").predict(texts)
    assert [row["text"] for row in rows] == texts
    assert [row["line"] for row in rows] == list(range(1, 61)) + list(range(63, 133))  # blank lines 61, 62 skipped
    for row, prediction in zip(rows, expected, strict=True):
        assert row["label"] == prediction.label and row["score"] == pytest.approx(prediction.score, abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]  # no partial/progress left


def test_bad_lines_go_to_the_errors_file_and_the_job_goes_on(textcat_model_dir, tmp_path):
    lines = [b'{"text": "A moving, beautifully shot film."}', b'{"text": "broken', b'{"review": "no text field"}',
             b'{"text": "   "}', b'{"text": 42}', b'[1, 2]', b'{"text": "caf\xe9 au lait"}', b"",
             b'{"text": "Two hours I will never get back."}']
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    summary = label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=3)
    assert (summary["records"], summary["errors"]) == (2, 6)
    assert [json.loads(r)["line"] for r in (tmp_path / "out.jsonl").read_text().splitlines()] == [1, 9]
    errors = [json.loads(r) for r in Path(summary["errors_file"]).read_text().splitlines()]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 6, 7]
    reasons = [e["reason"] for e in errors]
    assert reasons[0].startswith("not valid JSON") and "missing text field 'text'" in reasons[1]
    assert "empty or blank" in reasons[2] and "must be a string" in reasons[3]
    assert "JSON object" in reasons[4] and "not valid UTF-8" in reasons[5]
    # a later clean run into the same OUTPUT removes the stale errors file
    source.write_bytes(lines[0] + b"\n")
    assert label_file(textcat_model_dir, source, tmp_path / "out.jsonl")["errors"] == 0
    assert not Path(summary["errors_file"]).exists()


def test_crash_mid_commit_resumes_to_identical_bytes(textcat_model_dir, tmp_path, monkeypatch):
    texts = sample_texts(300)
    texts[77] = "\udcff"  # written below as an undecodable byte: an errors-file entry in the middle
    source = tmp_path / "in.txt"
    source.write_bytes(b"".join(b"\xff\n" if t == "\udcff" else (t + "\n").encode() for t in texts))
    reference = label_file(textcat_model_dir, source, tmp_path / "ref.jsonl", window=40)
    crash_on_progress_write(monkeypatch, after=4)  # the start record + 3 windows commit, the 4th is torn
    with pytest.raises(Crash):
        label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=40)
    progress = json.loads((tmp_path / "out.jsonl.progress").read_text())
    assert progress["next"]["line"] == 120 and progress["records"] == 119 and progress["errors"] == 1
    assert (tmp_path / "out.jsonl.partial").stat().st_size > progress["lengths"]["data"]  # torn tail on disk
    monkeypatch.undo()
    resumed = label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=40)
    assert resumed["resumed_at_line"] == 121 and resumed["records"] == reference["records"] == 299
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert (tmp_path / "out.jsonl.errors.jsonl").read_bytes() == (tmp_path / "ref.jsonl.errors.jsonl").read_bytes()


def test_refuses_to_resume_over_changed_input_or_options(textcat_model_dir, tmp_path, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sample_texts(100)) + "\n")
    crash_on_progress_write(monkeypatch, after=2)
    with pytest.raises(Crash):
        label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=30)
    monkeypatch.undo()
    with pytest.raises(ResumeError, match=r"different model, input or options .*batch_size: 64 → 8.*--restart"):
        label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=30, batch_size=8)
    source.write_text(source.read_text().replace("Nothing", "nothing", 1))  # same size, changed prefix
    with pytest.raises(ResumeError, match=r"the input changed since the interrupted run .*--restart"):
        label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=30)
    summary = label_file(textcat_model_dir, source, tmp_path / "out.jsonl", window=30, restart=True)
    assert summary["records"] == 100 and summary["resumed_at_line"] is None


def test_conll_in_conll_and_jsonl_out_with_a_bad_sentence(ner_model_dir, tmp_path):
    conll = (SAMPLES / "ner/dev.conll").read_bytes()
    lines = conll.split(b"\n")
    lines[20] = lines[20] + b"\xff"  # spoils the sentence around line 21
    source = tmp_path / "bad.conll"
    source.write_bytes(b"\n".join(lines))
    whole = label_file(ner_model_dir, SAMPLES / "ner/dev.conll", tmp_path / "whole.conll")
    windowed = label_file(ner_model_dir, source, tmp_path / "out.conll", window=5)
    assert windowed["records"] == whole["records"] - 1 and windowed["errors"] == 1
    error = json.loads(Path(windowed["errors_file"]).read_text())
    assert error["line"] == 21 and "not valid UTF-8" in error["reason"] and "skipped" in error["reason"]
    whole_lines = (tmp_path / "whole.conll").read_text().splitlines()
    out_lines = (tmp_path / "out.conll").read_text().splitlines()
    assert len(out_lines) < len(whole_lines) and set(out_lines) <= set(whole_lines)
    label_file(ner_model_dir, SAMPLES / "ner/dev.conll", tmp_path / "out.jsonl", window=7)
    rows = [json.loads(row) for row in (tmp_path / "out.jsonl").read_text().splitlines()]
    tagged = [line.split() for line in whole_lines if line and not line.startswith("-DOCSTART-")]
    assert [tag for row in rows for tag in row["tags"]] == [columns[-1] for columns in tagged]


def test_gzipped_input_and_windows_cut_the_same_from_any_boundary(textcat_model_dir, tmp_path):
    data = ("\n".join(sample_texts(50)) + "\n").encode()
    (tmp_path / "in.txt.gz").write_bytes(gzip.compress(data))
    (tmp_path / "in.txt").write_bytes(data)
    label_file(textcat_model_dir, tmp_path / "in.txt.gz", tmp_path / "gz.jsonl", window=16)
    label_file(textcat_model_dir, tmp_path / "in.txt", tmp_path / "plain.jsonl", window=16)
    assert (tmp_path / "gz.jsonl").read_bytes() == (tmp_path / "plain.jsonl").read_bytes()
    reader = InputReader(tmp_path / "in.txt", window_size=16)
    windows = list(reader.windows())
    assert [len(w.items) for w in windows] == [16, 16, 16, 2]
    again = list(reader.windows(windows[2].start))  # what a resumed job sees
    assert [w.items for w in again] == [w.items for w in windows[2:]] and again[0].digest == windows[2].digest
    assert windows[-1].end == Position(4, len(data), 50)


def test_two_jobs_cannot_write_the_same_output(tmp_path):
    files = {"data": tmp_path / "o.partial", "errors": tmp_path / "o.errors.partial"}
    first = Checkpoint(tmp_path / "o.progress", files, {"a": 1})
    first.open()
    with pytest.raises(ResumeError, match="another job is writing this output"):
        Checkpoint(tmp_path / "o.progress", files, {"a": 1}).open()
    first.remove()


def test_an_unreadable_progress_record_names_the_file_and_the_way_out(tmp_path):
    from pipelines.checkpoint import read_state

    progress = tmp_path / "out.jsonl.progress"
    progress.write_text("{torn")
    with pytest.raises(ResumeError, match=r"out\.jsonl\.progress: unreadable checkpoint .*add --restart"):
        read_state(progress)


def test_a_progress_write_killed_midway_leaves_nothing_the_resumed_job_keeps(tmp_path):
    files = {"data": tmp_path / "o.partial", "errors": tmp_path / "o.errors.partial"}
    progress = tmp_path / "o.progress"
    first = Checkpoint(progress, files, {"a": 1})
    first.open()
    first.commit({"data": b"one\n", "errors": b""}, Position(1, 4, 1), "digest", 1, 0)
    first.release()
    torn = tmp_path / ".o.progress.tmp-k1ll3d00"  # what a kill between write and rename leaves
    torn.write_text('{"torn')
    resumed = Checkpoint(progress, files, {"a": 1})
    state = resumed.open()
    assert (state.records, state.next, state.lengths["data"]) == (1, Position(1, 4, 1), 4) and not torn.exists()
    resumed.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.errors.partial", "o.partial"]


def test_lines_no_json_decoder_can_take_are_errors_file_records(tmp_path):
    """Nesting deeper than Python's recursion limit, an integer of 5,000 digits: the job used to stop there."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": "fine"}\n' + b"[" * 100_000 + b"\n" + b'{"text": "x", "n": ' + b"1" * 5000
                       + b"}\n" + b'{"review": "no text"}\n')
    items = [item for window in InputReader(source).windows() for item in window.items]
    assert [type(item).__name__ for item in items] == ["Text", "Bad", "Bad", "Bad"]
    assert items[1].reason == "not valid JSON (nested too deeply to read)"
    assert items[2].reason.startswith("not valid JSON (Exceeds the limit (4300 digits)")
    assert items[3].reason == "missing text field 'text' (fields present: review); set --text-field"
