import gzip
import json

import pytest

from toolkit.data.readers import check_labels, read_labelled, read_records
from toolkit.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_reads_jsonl_csv_and_gzip(tmp_path):
    rows = [{"text": "good film", "label": "pos"}, {"text": "bad, sad", "label": "neg"}]
    examples = read_labelled(write_jsonl(tmp_path / "a.jsonl", rows))
    assert [(e.text, e.label, e.line) for e in examples] == [("good film", "pos", 1), ("bad, sad", "neg", 2)]
    (tmp_path / "b.csv").write_text('review,stars\n"bad, sad",neg\ngood film,pos\n', encoding="utf-8")
    assert [e.text for e in read_labelled(tmp_path / "b.csv", "review", "stars")] == ["bad, sad", "good film"]
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress((json.dumps(rows[0]) + "\n").encode()))
    assert read_labelled(tmp_path / "c.jsonl.gz")[0].label == "pos"


def test_missing_field_names_file_line_and_fix(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "x"}, {"review": "b", "label": "y"}])
    with pytest.raises(DataError) as error:
        read_labelled(path)
    message = str(error.value)
    assert f"{path}:2" in message and "missing text field 'text'" in message and "review" in message
    assert "text_field" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(DataError, match=r"empty.jsonl: contains no records"):
        read_labelled(path)


def test_undecodable_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "pos"}\n{"text": "caf\xe9", "label": "neg"}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2: line is not valid UTF-8"):
        read_labelled(path)


def test_bad_json_and_wrong_types(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": "pos"}\n{"text": "oops", "label": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_labelled(path)
    path.write_text('["text", "label"]\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: expected a JSON object"):
        read_labelled(path)
    path.write_text('{"text": null, "label": "pos"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'text' must be a string"):
        read_labelled(path)
    path.write_text('{"text": "  ", "label": "pos"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: field .text. is empty or blank"):
        read_labelled(path)


def test_csv_quoted_field_across_lines_keeps_its_line_break(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('text,label\n"line one\nline two",pos\nshort,neg\n"a,b",pos,extra\n', encoding="utf-8")
    records = read_records(path)
    assert next(records) == (2, {"text": "line one\nline two", "label": "pos"})
    assert next(records) == (4, {"text": "short", "label": "neg"})  # numbered by its own first line
    with pytest.raises(DataError, match=r"m\.csv:5: has 3 columns"):
        next(records)


def test_csv_with_wrong_column_count(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text,label\na,b,c\n")
    with pytest.raises(DataError, match=r"x.csv:2: has 3 columns but the header has 2"):
        read_labelled(path)


def test_unknown_label_names_line(tmp_path):
    path = write_jsonl(tmp_path / "dev.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}])
    with pytest.raises(DataError, match=r"dev.jsonl:2: unknown label 'meh'; the model knows \['neg', 'pos'\]"):
        check_labels(read_labelled(path), ["neg", "pos"], path)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_labelled(tmp_path / "nope.jsonl")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match=r"unknown file type '\.parquet'"):
        read_labelled(tmp_path / "x.parquet")


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("a.jsonl", "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\n",
     "a.jsonl:1: not valid JSON (Expecting value at column 1); the file looks like a CoNLL column file (line 1 is a "
     "CoNLL -DOCSTART- line), not JSONL (a .jsonl file holds one JSON object per line)"),
    ("a.jsonl", "A warm, funny film.\nDull.\n",
     "a.jsonl:1: not valid JSON (Expecting value at column 1); the file looks like plain text (line 1 is not JSON: "
     "'A warm, funny film.'), not JSONL"),
    ("a.jsonl", "text,label\nWarm.,pos\nDull.,neg\n",
     "the file looks like a CSV table (line 1 is a header line: 'text,label'), not JSONL"),
    ("a.csv", '{"text": "Warm.", "label": "pos"}\n',
     "a.csv: looks like JSONL (line 1 is a JSON object: '{\"text\": \"Warm.\", \"label\": \"po'…), not CSV (rename the "
     "file to .jsonl)"),
    ("a.csv", "text\tlabel\nWarm.\tpos\n",
     "a.csv: looks tab-separated (its header line 'text\\tlabel' has no commas), not CSV (rename the file to .tsv)"),
    ("a.tsv", "text,label\nWarm.,pos\n",
     "a.tsv: looks comma-separated (its header line 'text,label' has no tabs), not TSV (rename the file to .csv)"),
    ("a.txt", "Warm.\n", "a.txt: expected a .jsonl or .csv/.tsv file for labelled texts, got a txt file (one JSON "
                         'object per line such as {"text": "...", "label": "..."}, or a CSV/TSV table with a header'),
])
def test_labelled_files_of_another_format_are_named_as_such(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as error:
        read_labelled(path)
    assert expected in str(error.value)


def test_a_broken_line_after_good_ones_is_not_called_another_format(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"text": "ok", "label": "pos"}\nA warm film.\n')
    with pytest.raises(DataError) as error:
        read_labelled(path)
    assert str(error.value) == f"{path}:2: not valid JSON (Expecting value at column 1)"


def test_one_rule_for_a_jsonl_line_and_its_field():
    """What training, `evaluate` and the batch job share (the job records the reason and goes on)."""
    from toolkit.data.readers import field_text, json_record

    assert json_record('{"text": "x"}') == {"text": "x"}
    for line, reason in [('{"text": ', "not valid JSON (Expecting value at column 10)"),
                         ("[1, 2]", "expected a JSON object per line, got list"),
                         ("[" * 100_000, "not valid JSON (nested too deeply to read)")]:
        with pytest.raises(ValueError) as error:
            json_record(line)
        assert str(error.value) == reason
    assert field_text({"label": 1}, "label", "label", numbers=True) == "1"
    for record, numbers, reason in [({"review": "x"}, False, "missing text field 'text' (fields present: review)"),
                                    ({"text": 42}, False, "field 'text' must be a string, got int"),
                                    ({"text": True}, True, "field 'text' must be a string, got bool")]:
        with pytest.raises(ValueError) as error:
            field_text(record, "text", numbers=numbers)
        assert str(error.value) == reason


def test_a_training_file_nested_too_deeply_is_a_data_error_not_a_crash(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine", "label": "pos"}\n' + "[" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"deep\.jsonl:2: not valid JSON \(nested too deeply to read\)"):
        read_labelled(path)
