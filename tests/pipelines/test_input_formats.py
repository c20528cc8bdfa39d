"""Input of the wrong format, given to `bilstm label` and `bilstm evaluate`: one line naming what the file seems
to be, what the model reads and what to do, before anything is labelled or written (status 2 from the CLI).

Only plain mismatches are refused (judged on the first non-blank lines); a broken line among good ones stays an
errors-file record, as before.
"""

from __future__ import annotations

import json

import pytest

from pipelines.label import label_file
from tests.conftest import SAMPLES, run_bilstm
from tests.pipelines.test_batch_label import sample_texts
from toolkit.errors import DataError
from toolkit.evaluate import evaluate

JSONL = "".join(json.dumps({"text": text, "label": "pos"}) + "\n" for text in sample_texts(5))
PLAIN = "A warm, funny film with a great cast.\nDull.\nI would watch it again tomorrow, twice.\n"
CONLL = (SAMPLES / "ner/dev.conll").read_text()
CSV = "review,sentiment\n\"A warm, funny film.\",pos\nDull.,neg\n"
TAGGER_READS = ("a 'tag' model reads CoNLL column files of pre-tokenised sentences (.conll: token first, one sentence "
                "per blank-line block) or .txt (one raw text per line) or .jsonl")
CLASSIFIER_READS = "a 'classify' model reads .txt (one raw text per line) or .jsonl (one JSON object per line"


@pytest.mark.parametrize(("model", "name", "content", "expected"), [
    ("tagger", "data.conll", JSONL, ["looks like JSONL (line 1 is a JSON object: '{\"text\":", "a CoNLL file is read "
                                     "as one token per line", TAGGER_READS, "(rename the file to .jsonl)"]),
    ("tagger", "data.conll", PLAIN, ["looks like plain text (one text per line: line 1 has 8 words, line 2 has 1 "
                                     "word", TAGGER_READS, "(rename the file to .txt)"]),
    ("tagger", "data.txt", CONLL, ["looks like a CoNLL column file (line 1 is a CoNLL -DOCSTART- line), but a .txt "
                                   "file is read as one raw text per line", "(rename the file to .conll)"]),
    ("classifier", "data.txt", JSONL, ["looks like JSONL (line 1 is a JSON object", "but a .txt file is read as one "
                                       "raw text per line", CLASSIFIER_READS, "(rename the file to .jsonl)"]),
    ("classifier", "data.jsonl", PLAIN, ["looks like plain text (line 1 is not JSON: 'A warm, funny film with a grea'…",
                                         "a .jsonl file is read as one JSON object per line", CLASSIFIER_READS,
                                         "(rename the file to .txt)"]),
    ("classifier", "data.jsonl", CSV, ["looks like a CSV table (line 1 is a header line: 'review,sentiment')"]),
    ("classifier", "data.txt", CONLL, ["looks like a CoNLL column file", "(only a model that reads pre-tokenised "
                                       "sentences labels CoNLL files (a tagger))"]),
])
def test_label_refuses_an_input_plainly_of_another_format(textcat_model_dir, ner_model_dir, tmp_path, model, name,
                                                          content, expected):
    model_dir = ner_model_dir if model == "tagger" else textcat_model_dir
    source = tmp_path / name
    source.write_text(content)
    with pytest.raises(DataError) as error:
        label_file(model_dir, source, tmp_path / "out.jsonl")
    message = str(error.value)
    assert message.startswith(f"{source}: ") and "\n" not in message
    for part in expected:
        assert part in message
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]  # nothing written, input as it was
    assert source.read_text() == content


def test_the_cli_says_it_in_one_line_with_status_2(ner_model_dir, tmp_path):
    """The reported case: a tagger given JSONL named .conll (it used to say "16 columns, but earlier lines have 13")."""
    source = tmp_path / "texts.conll"
    source.write_text(JSONL)
    result = run_bilstm("label", str(ner_model_dir), str(source), str(tmp_path / "out.jsonl"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"bilstm: error: {source}: looks like JSONL (line 1 is a JSON object: "
        f"{json.dumps(json.loads(JSONL.splitlines()[0]))[:30]!r}…), but a CoNLL file is read as one token per line "
        f"(its words would be tagged as tokens); {TAGGER_READS} (one JSON object per line, the text in 'text') "
        "(rename the file to .jsonl)"]


def test_mixed_files_are_still_labelled_line_by_line(textcat_model_dir, tmp_path):
    """A broken first line, or one text that happens to be JSON, is no reason to refuse the file."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": broken\n' + JSONL)
    summary = label_file(textcat_model_dir, source, tmp_path / "out.jsonl")
    assert (summary["records"], summary["errors"]) == (5, 1)
    texts = tmp_path / "in.txt"
    texts.write_text('{"a": 1}\n' + PLAIN)
    assert label_file(textcat_model_dir, texts, tmp_path / "texts.jsonl")["records"] == 4


@pytest.mark.parametrize(("model", "name", "content", "expected"), [
    ("tagger", "dev.jsonl", JSONL, "looks like JSONL (line 1 is a JSON object: '{\"text\":"),
    ("tagger", "dev.txt", PLAIN, "looks like plain text (one text per line: line 1 has 8 words"),
    ("classifier", "dev.conll", CONLL, "expected a .jsonl or .csv/.tsv file for labelled texts, got a conll file"),
    ("classifier", "dev.jsonl", CONLL, "not valid JSON (Expecting value at column 1); the file looks like a CoNLL "
                                       "column file (line 1 is a CoNLL -DOCSTART- line), not JSONL"),
    ("classifier", "dev.csv", JSONL, "looks like JSONL (line 1 is a JSON object"),
])
def test_evaluate_names_the_format_it_expected(textcat_model_dir, ner_model_dir, tmp_path, model, name, content,
                                               expected):
    source = tmp_path / name
    source.write_text(content)
    with pytest.raises(DataError) as error:
        evaluate(ner_model_dir if model == "tagger" else textcat_model_dir, source)
    message = str(error.value)
    assert expected in message and "\n" not in message
    if model == "tagger":
        assert message.endswith("not a CoNLL column file (expected a CoNLL column file: one token per line, token "
                                "first and the tag last, a blank line after each sentence)")


def test_evaluate_cli_on_the_wrong_format_is_one_line_with_status_2(ner_model_dir, tmp_path):
    source = tmp_path / "dev.jsonl"
    source.write_text(JSONL)
    result = run_bilstm("evaluate", str(ner_model_dir), str(source))
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"bilstm: error: {source}: looks like JSONL") and "expected a CoNLL column file" in line


def test_what_a_model_labels_follows_its_task_entry_not_its_name(tmp_path, monkeypatch):
    """A task registered with input kind "tokens" labels CoNLL files whatever its name; "tag" without it does not."""
    from dataclasses import replace

    from pipelines.sources import check_looks_like
    from toolkit.registry import TASKS

    monkeypatch.setitem(TASKS, "chunk", replace(TASKS["classify"], input_kind="tokens"))
    monkeypatch.setitem(TASKS, "tag", replace(TASKS["tag"], input_kind="text"))
    source = tmp_path / "data.txt"
    source.write_text(CONLL)
    with pytest.raises(DataError) as chunk:
        check_looks_like(source, "txt", "chunk")
    assert "a 'chunk' model reads CoNLL column files of pre-tokenised sentences" in str(chunk.value)
    assert str(chunk.value).endswith("(rename the file to .conll)")
    with pytest.raises(DataError) as tag:
        check_looks_like(source, "txt", "tag")
    assert "a 'tag' model reads .txt (one raw text per line) or .jsonl" in str(tag.value)
    assert str(tag.value).endswith("(only a model that reads pre-tokenised sentences labels CoNLL files (a tagger))")

