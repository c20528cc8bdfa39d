"""`bilstm label` never loses its input: bad output paths are refused before any work, in one line, status 2."""

from __future__ import annotations

import os

import pytest

from pipelines.label import label_file
from tests.conftest import run_bilstm
from toolkit.errors import DataError

TEXTS = b"A warm, funny film.\nA dull one.\n"


def snapshot(path):
    stat = path.stat()
    return path.read_bytes(), stat.st_ino, stat.st_mtime_ns


@pytest.mark.parametrize(("make_output", "message"), [
    (lambda d, i: i, "the output would overwrite the input"),
    (lambda d, i: (d / "link.txt").symlink_to(i) or d / "link.txt", "the output would overwrite the input"),
    (lambda d, i: os.link(i, d / "hard.txt") or d / "hard.txt", "the output would overwrite the input"),
    (lambda d, i: (d / "out.jsonl").mkdir() or d / "out.jsonl", "is a directory"),
    (lambda d, i: d / "missing" / "out.jsonl", "does not exist"),
    (lambda d, i: d / "out.csv", r"the job writes JSON Lines \(or CoNLL\), not '.csv' files"),
    (lambda d, i: d / "out", "not files without an extension"),
    (lambda d, i: d / "in.txt.jsonl", None),  # a fine output: checked below to show the test can pass
])
def test_bad_outputs_are_refused_before_any_work(tmp_path, make_output, message):
    source = tmp_path / "in.txt"
    source.write_bytes(TEXTS)
    before = snapshot(source)
    output = make_output(tmp_path, source)
    if message is None:  # a model directory that does not exist is the next thing checked
        with pytest.raises(Exception, match="model directory not found"):
            label_file(tmp_path / "no-model", source, output)
        return
    with pytest.raises(DataError, match=message):
        label_file(tmp_path / "no-model", source, output)  # refused before the model is even looked at
    assert snapshot(source) == before
    leftovers = {p.name for p in tmp_path.iterdir()} - {"in.txt", "link.txt", "hard.txt", "out.jsonl"}
    assert leftovers == set()  # no partial, progress or lock file was created


def test_a_side_file_that_is_the_input_is_refused(tmp_path):
    source = tmp_path / "out.jsonl.errors.jsonl"
    source.write_bytes(b'{"text": "an old errors file relabelled"}\n')
    with pytest.raises(DataError, match=r"the job's errors_final file out\.jsonl\.errors\.jsonl would overwrite"):
        label_file(tmp_path / "no-model", source, tmp_path / "out.jsonl")


def test_the_cli_says_it_in_one_line_with_status_2(textcat_model_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(TEXTS)
    result = run_bilstm("label", str(textcat_model_dir), str(source), str(source))
    assert result.returncode == 2 and source.read_bytes() == TEXTS
    assert result.stderr.strip().splitlines() == [
        f"bilstm: error: {source}: the output would overwrite the input {source} (write the output to another file)"]
