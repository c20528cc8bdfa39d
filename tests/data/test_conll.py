import re

import pytest

from toolkit.data.conll import ColumnFormat, Sentence, iter_conll, read_conll
from toolkit.errors import DataError

CONLL = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC

Peter NNP I-NP I-PER
-DOCSTART- -X- O O

Bonn NNP I-NP I-LOC
"""


def test_reads_sentences_documents_and_docstart_lines(tmp_path):
    path = tmp_path / "a.conll"
    path.write_text(CONLL)
    items = list(iter_conll(path))
    assert [type(item).__name__ for item in items] == ["str", "Sentence", "Sentence", "str", "Sentence"]
    first = items[1]
    assert first.tokens == ["EU", "rejects", "German"] and first.tags == ["I-ORG", "O", "I-MISC"]
    assert first.first_line == 3 and first.document == 1 and first.lines[0] == "EU NNP I-NP I-ORG"
    assert items[4].document == 2
    sentences = read_conll(path, ColumnFormat(token_column=0, tag_column=2))
    assert sentences[0].tags == ["I-NP", "I-VP", "I-NP"]
    assert all(isinstance(s, Sentence) for s in sentences)
    assert read_conll(path, with_tags=False)[0].tags is None


def test_inconsistent_columns_name_the_line(tmp_path):
    path = tmp_path / "b.conll"
    path.write_text("EU NNP I-NP I-ORG\nrejects VBZ O\n")
    with pytest.raises(DataError, match=r"b.conll:2: has 3 columns, but earlier lines have 4"):
        read_conll(path)


def test_bad_tag_and_missing_column(tmp_path):
    path = tmp_path / "c.conll"
    path.write_text("EU NNP I-NP ORG\n")
    with pytest.raises(DataError, match=r"c.conll:1: invalid tag 'ORG'"):
        read_conll(path)
    with pytest.raises(DataError, match=r"c.conll:1: has 4 column\(s\); token column 0 / tag column 7"):
        read_conll(path, ColumnFormat(tag_column=7))


def test_empty_and_gzipped_files(tmp_path):
    import gzip

    (tmp_path / "e.conll").write_text("-DOCSTART- -X- O O\n\n")
    with pytest.raises(DataError, match="contains no sentences"):
        read_conll(tmp_path / "e.conll")
    (tmp_path / "g.conll.gz").write_bytes(gzip.compress(CONLL.encode()))
    assert len(read_conll(tmp_path / "g.conll.gz")) == 3


def test_a_jsonl_file_is_named_as_such_not_as_a_column_count(tmp_path):
    """It used to say "has 16 columns, but earlier lines have 13" (the texts' word counts)."""
    path = tmp_path / "texts.conll"
    path.write_text('{"text": "A warm, funny film with a great cast.", "label": "pos"}\n{"text": "Dull.", '
                    '"label": "neg"}\n')
    with pytest.raises(DataError) as error:
        read_conll(path)
    assert str(error.value) == (f"{path}: looks like JSONL (line 1 is a JSON object: '{{\"text\": \"A warm, funny "
                                "film w'…), not a CoNLL column file (expected a CoNLL column file: one token per line, "
                                "token first and the tag last, a blank line after each sentence)")


@pytest.mark.parametrize(("content", "with_tags", "expected"), [
    ("A warm, funny film.\nDull.\nI would watch it again.\n", False,
     "looks like plain text (one text per line: line 1 has 4 words, line 2 has 1 word, where a column file has the "
     "same columns on every line), not a CoNLL column file"),
    ("Dull.\nA warm, funny film.\n", True, "line 1 has 1 word, line 2 has 4 words"),  # where a tag was expected
    ("A warm one.\nA dull one.\n", True, "x.conll:1: invalid tag 'one.'"),  # one width: could be columns
    ("review,sentiment\nWarm.,pos\nDull.,neg\n", True,
     "looks like a CSV table (line 1 is a header line: 'review,sentiment'), not a CoNLL column file"),
])
def test_plain_text_and_csv_are_named_as_such(tmp_path, content, with_tags, expected):
    path = tmp_path / "x.conll"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(expected)):
        read_conll(path, with_tags=with_tags)


def test_a_broken_line_in_a_real_column_file_still_names_the_line(tmp_path):
    lines = [f"w{i} NNP I-NP {'O' if i % 3 else 'B-PER'}" for i in range(12)]
    lines[7] = "w7 NNP O"  # one column short
    path = tmp_path / "b.conll"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"b\.conll:8: has 3 columns, but earlier lines have 4"):
        read_conll(path)


def test_the_grouper_spoils_a_sentence_once_and_goes_on_with_the_next():
    """What the batch job reads through: a bad or over-long sentence is one piece naming its first line."""
    from toolkit.data.conll import Block, DocumentStart, SentenceGrouper, Spoiled

    grouper = SentenceGrouper(max_chars=30)
    lines = ["-DOCSTART- -X- O O", "", "EU B-ORG", None, "rejects O", "", "Peter B-PER", "", "a O", "b" * 30 + " O",
             "c O", "", "Bonn B-LOC"]
    pieces = [(number, piece) for number, line in enumerate(lines, start=1)
              for piece in grouper.add(number, line, "line is not valid UTF-8 (byte 3)")]
    pieces += [(0, piece) for piece in grouper.close()]
    assert pieces == [
        (1, DocumentStart(1, "-DOCSTART- -X- O O")),
        (6, Spoiled(4, "line is not valid UTF-8 (byte 3); sentence from line 3 skipped")),
        (8, Block(7, ["Peter B-PER"], [["Peter", "B-PER"]])),
        (12, Spoiled(10, "sentence is longer than 30 characters; sentence from line 9 skipped")),
        (0, Block(13, ["Bonn B-LOC"], [["Bonn", "B-LOC"]])),
    ]
    assert grouper.close() == ()


def test_a_column_count_is_named_before_a_bad_tag_of_the_same_sentence(tmp_path):
    path = tmp_path / "w.conll"
    path.write_text("EU NNP I-NP ORG\nrejects VBZ I-VP O\nGerman JJ I-MISC\n")
    with pytest.raises(DataError, match=r"w.conll:3: has 3 columns, but earlier lines have 4"):
        read_conll(path)
