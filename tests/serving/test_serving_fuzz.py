"""Property-based fuzzing of the live endpoints: whatever the body or Content-Type, never a 5xx.

Bodies: arbitrary JSON values, near-valid ``{"texts": [...]}`` objects (blank, very long, surrogate and
control characters, extra keys, too many texts), JSON with invalid UTF-8, and raw bytes. For well-formed
requests the answer is exactly what the documented rules say: 200 with one result per text, in order, when
every text is usable and within the limits; otherwise 413 (too many or too long) or 422 (a text the model
cannot take), with a JSON error body.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import LIMITS
from toolkit.data.textrules import text_problem

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


any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60) | texts


@pytest.mark.parametrize("task", TASKS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(any_text, min_size=1, max_size=10))
def test_well_formed_requests_get_the_documented_answer(client, task, batch):
    body = json.dumps({"texts": batch}).encode()  # ASCII with \\uXXXX escapes: lone surrogates stay valid JSON
    response = client.post(f"/{task}", content=body, headers={"content-type": "application/json"})
    batch = json.loads(body)["texts"]  # what the server reads: an escaped high+low surrogate pair is one character
    max_texts, max_chars = int(LIMITS["BILSTM_MAX_TEXTS"]), int(LIMITS["BILSTM_MAX_CHARS"])
    if len(batch) > max_texts or any(len(text) > max_chars for text in batch):
        assert response.status_code == 413, response.text
    elif any(text_problem(text) for text in batch):
        assert response.status_code == 422, response.text
        first = next(i for i, text in enumerate(batch) if text_problem(text))
        assert f"texts.{first}" in response.json()["error"]
    else:
        assert response.status_code == 200, response.text
        results = response.json()
        assert len(results) == len(batch)
        for text, result in zip(batch, results, strict=True):
            if task == "translate":
                assert result["source"] == text
            elif task == "tag":
                assert all(text[e["start"]:e["end"]] == e["text"] for e in result["entities"])
            else:
                assert abs(sum(result["probabilities"].values()) - 1) < 1e-4


def _numbers(schema: dict, integers: bool) -> st.SearchStrategy:
    """Numbers around a property's bounds (just inside and just outside), tiny and huge ones, and anything else."""
    bounds = [schema[key] for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if key in schema]
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if integers:
        edges = [edge + step for edge in bounds for step in (-1, 0, 1)] + [2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63]
        return st.integers(low, high) | st.sampled_from(edges) | st.integers()
    edges = [edge + step for edge in bounds for step in (-1e-9, 0.0, 1e-9)]
    edges += [5e-324, 1e-320, 1e-310, 1e-300, 1e-45, 1e-38, -5e-324, 1e308, 3.4e38, 0.0, -0.0]
    inside = st.floats(low, high, exclude_min="exclusiveMinimum" in schema, exclude_max="exclusiveMaximum" in schema)
    return inside | st.sampled_from(edges) | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-3, 300)


def from_schema(schema: dict) -> st.SearchStrategy:
    """Request bodies drawn from a route's own JSON schema (the one /docs.json publishes), near and past its limits."""
    kinds = schema.get("anyOf")
    if kinds:
        return st.one_of([from_schema(kind) for kind in kinds])
    kind = schema.get("type")
    if kind == "object":
        properties = {name: from_schema(part) for name, part in schema["properties"].items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries({n: s for n, s in properties.items() if n in required},
                                     optional={n: s for n, s in properties.items() if n not in required})
    if kind == "array":
        items, low, high = from_schema(schema["items"]), schema.get("minItems", 0), schema.get("maxItems", 4)
        return st.lists(items, min_size=low, max_size=high) | st.lists(items, min_size=max(0, low - 1),
                                                                         max_size=high + 1)
    if kind == "string":  # as long as allowed, one more, and every kind of character
        longest = schema.get("maxLength", 60)
        return any_text | st.sampled_from(["word " * (longest // 5), "a" * (longest + 1), ""])
    if kind in ("integer", "number"):
        return _numbers(schema, integers=kind == "integer")
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"no strategy for the schema {schema}")


def route_schemas() -> dict[str, dict]:
    from serving.schemas import model_routes

    routes = model_routes(int(LIMITS["BILSTM_MAX_TEXTS"]), int(LIMITS["BILSTM_MAX_CHARS"]), 256)
    return {path: route.request.model_json_schema() for path, route in routes.items()}


@pytest.mark.parametrize("path", sorted(route_schemas()))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_body_a_route_schema_describes_gets_a_5xx(client, path, data):
    """Every value the schema accepts is served, and every other one is a 4xx naming the problem (issue 23)."""
    body = data.draw(from_schema(route_schemas()[path]))
    response = client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    event(f"status {response.status_code}")
    assert response.status_code < 500, (body, response.status_code, response.text[:500])
    payload = response.json()
    if response.status_code == 200:
        items = body.get("texts", body.get("prompts"))
        assert isinstance(payload, list) and len(payload) == len(items)
    else:
        assert isinstance(payload, dict) and payload["error"], payload
