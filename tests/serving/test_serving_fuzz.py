"""Property-based fuzzing of the live endpoints: whatever the body or Content-Type, never a 5xx.

Bodies: arbitrary JSON values, near-valid ``{"texts": [...]}`` objects (blank, very long, surrogate and
control characters, extra keys, too many texts), JSON with invalid UTF-8, and raw bytes.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TASKS = ["classify", "tag", "translate"]

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
texts = st.one_of(
    st.text(max_size=40),  # any code point but surrogates: controls, combining marks, emoji, RTL…
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.text(alphabet=st.sampled_from(" \t\n\r\u00a0\u2028\u3000\ufeff\u200b"), max_size=5),  # blank-ish
    st.sampled_from(["a" * 200, "a" * 201, "<br /><br />", "...", "\x00", "é" * 200, "Bonn " * 40]),
)
near_valid = st.fixed_dictionaries({"texts": st.lists(texts, max_size=10)}) | st.fixed_dictionaries(
    {"texts": st.lists(texts, min_size=1, max_size=3)}, optional={"beam_size": json_values, "extra": json_values})


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "near_valid", "near_valid", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    value = draw(json_values if kind == "json" else near_valid)
    # ensure_ascii=False + surrogatepass sends lone surrogates as invalid UTF-8 bytes.
    return json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", None,
                                 "text/plain", "multipart/form-data; boundary=x", "application/vnd.bentoml+pickle"])


@pytest.mark.parametrize("task", TASKS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), content_type=content_types)
def test_no_request_gets_a_5xx(client, task, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(f"/{task}", content=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    payload = response.json()
    if response.status_code == 200:
        assert isinstance(payload, list) and len(payload) == len(json.loads(body)["texts"])
    else:
        assert isinstance(payload, dict) and payload["error"]
