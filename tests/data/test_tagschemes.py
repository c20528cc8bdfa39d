import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit.data.tagschemes import convert, detect_scheme, is_valid, spans_from_tags, tags_from_spans

IOB1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O", "I-MISC"]


def test_conll_iob1_to_iob2_and_bioes():
    assert spans_from_tags(IOB1, "iob1") == [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (6, 7, "MISC")]
    assert convert(IOB1, "iob1", "iob2") == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O", "B-MISC"]
    assert convert(IOB1, "iob1", "bioes") == ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "O", "S-MISC"]


@st.composite
def span_sequences(draw):
    length = draw(st.integers(0, 12))
    spans, position = [], 0
    while position < length:
        position += draw(st.integers(0, 2))
        size = draw(st.integers(1, 3))
        if position + size > length:
            break
        spans.append((position, position + size, draw(st.sampled_from(["PER", "LOC"]))))
        position += size
    return spans, length


@given(span_sequences(), st.sampled_from(["iob1", "iob2", "bioes"]), st.sampled_from(["iob1", "iob2", "bioes"]))
def test_conversions_round_trip(data, source, target):
    spans, length = data
    tags = tags_from_spans(spans, length, source)
    assert is_valid(tags, source)
    assert spans_from_tags(tags, source) == spans
    converted = convert(tags, source, target)
    assert is_valid(converted, target)
    assert convert(converted, target, source) == tags


def test_detect_scheme():
    assert detect_scheme([IOB1]) == "iob1"
    assert detect_scheme([["B-PER", "I-PER", "O"]]) == "iob2"
    assert detect_scheme([["S-PER", "O"]]) == "bioes"


def test_invalid_tag_is_rejected():
    with pytest.raises(ValueError, match="invalid tag 'X-PER'"):
        spans_from_tags(["X-PER"], "iob2")
