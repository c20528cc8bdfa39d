"""Property-based tests of `bilstm label` over any bytes a file can hold.

For generated inputs (arbitrary Unicode, lone surrogates, invalid UTF-8, a byte-order mark, CRLF, blank and
very long lines, broken JSON): every input line ends up exactly once in the output, in the errors file or
among the documented skips (blank lines), in input order; and a job killed with SIGKILL at a random point
and run again ends with the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.label import label_file
from tests.conftest import BILSTM, ROOT
from tests.pipelines.test_batch_label import one_torch_thread, sample_texts
from toolkit.errors import DataError

MAX_CHARS = 300  # small, so generated lines cross it

unicode_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)  # surrogates too
words = st.sampled_from(sample_texts(40))
line_text = st.one_of(words, unicode_text, st.sampled_from(["", "   ", "\t", "\x00", "x" * (MAX_CHARS + 1),
                                                            "word " * 80, "<br />"]))


def encode_line(text: str, kind: str, raw: bytes | None) -> bytes:
    """A text as one input line: raw bytes, JSONL (escaped, so lone surrogates stay valid JSON) or UTF-8."""
    if raw is not None:
        return raw
    if kind == "jsonl":
        return json.dumps({"text": text}).encode()
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8


@st.composite
def input_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["txt", "jsonl"]))
    lines = []
    for _ in range(draw(st.integers(1, 30))):
        raw = draw(st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=12),
                             st.sampled_from([b'{"text": broken', b"[1]", b'{"text": 3}', b"\xff\xfe"])))
        lines.append(encode_line(draw(line_text), kind, raw))
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = ending.join(lines) + draw(st.sampled_from([ending, b""]))
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data  # a UTF-8 byte-order mark
    return kind, data


def blank_lines(kind: str, data: bytes) -> set[int]:
    """Line numbers the job skips by design: lines whose text is only whitespace (.txt) or empty (.jsonl)."""
    skipped = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            continue
        if not text.strip():
            skipped.add(number)
    if data.endswith(b"\n"):
        skipped.discard(data.count(b"\n") + 1)  # the empty string after the last newline is no line
    return skipped


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return ValueError


def plainly_another_format(kind: str, data: bytes) -> bool:
    """The refusal docs/batch.md describes, judged on the first 20 non-blank UTF-8 lines: a .txt whose lines
    are all JSON objects (or CoNLL: -DOCSTART-, or 3+ lines of equal columns ending in a tag), a .jsonl in
    which no line is JSON or starts like it."""
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            continue
        text = text.removeprefix("\ufeff") if number == 1 else text
        if text.strip() and len(lines) < 20:
            lines.append(text)
    if not lines:
        return False
    if kind == "jsonl":
        return all(line.lstrip()[:1] not in "{[" and _json(line) is ValueError for line in lines)
    rows = [line.split() for line in lines]
    conll = rows[0][0] == "-DOCSTART-" or (len(rows) >= 3 and len({len(row) for row in rows}) == 1 and len(rows[0]) > 1
                                           and all(re.fullmatch(r"O|[BIESLU]-\S+", row[-1]) for row in rows))
    return conll or all(isinstance(_json(line), dict) for line in lines)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(generated=input_files(), window=st.integers(1, 8))
def test_every_line_is_output_error_or_documented_skip_in_order(textcat_model_dir, tmp_path_factory, generated,
                                                                 window):
    kind, data = generated
    folder = tmp_path_factory.mktemp("prop")
    source = folder / f"in.{kind}"
    source.write_bytes(data)
    if plainly_another_format(kind, data):  # refused whole, before anything is written
        with pytest.raises(DataError, match=r"looks like (JSONL|plain text|a (CoNLL column file|CSV table|TSV table))"):
            label_file(textcat_model_dir, source, folder / "out.jsonl", window=window, progress=False)
        assert [path.name for path in folder.iterdir()] == [source.name]
        return
    with one_torch_thread():
        summary = label_file(textcat_model_dir, source, folder / "out.jsonl", window=window, progress=False,
                             max_chars=MAX_CHARS)
    records = [json.loads(line) for line in (folder / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    errors_file = folder / "out.jsonl.errors.jsonl"
    errors = [json.loads(line) for line in errors_file.read_text().splitlines()] if errors_file.exists() else []
    record_lines, error_lines = [r["line"] for r in records], [e["line"] for e in errors]
    assert record_lines == sorted(record_lines) and error_lines == sorted(error_lines)  # input order
    total = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    assert set(record_lines).isdisjoint(error_lines)
    assert set(record_lines) | set(error_lines) | blank_lines(kind, data) == set(range(1, total + 1))
    assert (summary["records"], summary["errors"]) == (len(records), len(errors))
    for record in records:  # nothing the model cannot take got through
        assert "\ud800" not in record["text"] and len(record["text"]) <= MAX_CHARS and record["label"]
    assert all(error["reason"] for error in errors)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [source.name, "out.jsonl", *([errors_file.name] if errors else [])])


def test_the_odd_lines_land_where_the_docs_say(textcat_model_dir, tmp_path):
    lines = [b"\xef\xbb\xbfA fine film with a BOM in front.", b"x \xed\xa0\x80 y", b"ok\x00nul inside",
             b"\x00\x07", b"x" * (MAX_CHARS + 1), b"", b"  ", b"last one\r"]
    source = tmp_path / "in.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    summary = label_file(textcat_model_dir, source, tmp_path / "out.jsonl", max_chars=MAX_CHARS)
    records = {r["line"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    errors = {e["line"]: e["reason"] for e in map(json.loads, Path(summary["errors_file"]).read_text().splitlines())}
    assert records[1]["text"] == "A fine film with a BOM in front."  # the mark is dropped, not read as text
    assert records[3]["text"] == "ok\x00nul inside" and records[8]["text"] == "last one"  # CRLF read as LF
    assert "not valid UTF-8" in errors[2] and "empty or blank" in errors[4]
    assert f"over the limit of {MAX_CHARS}" in errors[5] and "--truncate" in errors[5]
    assert set(records) | set(errors) == {1, 2, 3, 4, 5, 8}
    cut = label_file(textcat_model_dir, source, tmp_path / "cut.jsonl", max_chars=MAX_CHARS, truncate=True)
    assert cut["errors"] == 2  # with --truncate the long line is labelled, and its record says it was cut
    long_line = [r for r in map(json.loads, (tmp_path / "cut.jsonl").read_text().splitlines()) if r["line"] == 5]
    assert long_line[0]["input_truncated"] is True


def test_lines_over_the_byte_limit_are_streamed_past(textcat_model_dir, tmp_path):
    from pipelines.sources import InputReader

    source = tmp_path / "in.txt"
    source.write_bytes(b"short one\n" + b"y" * 5000 + b"\nafter it\n")
    windows = list(InputReader(source, window_size=10, max_line_bytes=1000).windows())
    items = windows[0].items
    assert [item.line for item in items] == [1, 2, 3] and "longer than 1000 bytes" in items[1].reason
    assert windows[0].end.offset == source.stat().st_size  # every byte was read (and hashed) all the same


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(kill_after=st.integers(0, 350), seed_lines=st.lists(st.sampled_from(
    [b"\xff\xfe", b'{"text": "x \\ud800"}', b"", b'{"text": "' + b"z " * 200 + b'"}', b'{"text": "\\u0000"}']),
    min_size=5, max_size=5))
def test_sigkill_at_a_random_point_then_resume_gives_identical_bytes(textcat_model_dir, tmp_path_factory,
                                                                       kill_after, seed_lines):
    folder = tmp_path_factory.mktemp("kill")
    rows = [json.dumps({"text": text}).encode() for text in sample_texts(400)]
    for position, line in zip((3, 77, 150, 222, 390), seed_lines, strict=True):
        rows[position] = line
    source = folder / "in.jsonl"
    source.write_bytes(b"\n".join(rows) + b"\n")
    with one_torch_thread():
        label_file(textcat_model_dir, source, folder / "reference.jsonl", window=20, progress=False, max_chars=300)
    output = folder / "out.jsonl"
    argv = [*BILSTM, "label", str(textcat_model_dir), str(source), str(output), "--window", "20", "--max-chars",
            "300"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = Path(f"{output}.progress")
    deadline = time.monotonic() + 120
    while job.poll() is None and time.monotonic() < deadline:
        try:
            state = json.loads(progress.read_text())
            if state["records"] + state["errors"] >= kill_after:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    job.send_signal(signal.SIGKILL)
    job.wait(60)
    resumed = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert output.read_bytes() == (folder / "reference.jsonl").read_bytes()
    errors, reference_errors = Path(f"{output}.errors.jsonl"), folder / "reference.jsonl.errors.jsonl"
    assert errors.exists() == reference_errors.exists()  # no errors file when every seeded line is a skip
    assert not errors.exists() or errors.read_bytes() == reference_errors.read_bytes()
