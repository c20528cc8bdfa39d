"""The BentoML service over real HTTP: `bilstm serve` on 127.0.0.1 with the three tiny models."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from toolkit import Predictor

TEXTS = {
    "classify": ["I was smiling the whole way through. Pure, warm entertainment.", "A lazy, cynical sequel. Avoid."],
    "tag": ["Peter Blackburn visited Bonn in 1996 .", "EU rejects German call to boycott British lamb ."],
    "translate": ["Ein Hund läuft über den Strand.", "Zwei Kinder spielen im Park."],
}


@pytest.fixture(scope="module")
def predictors(textcat_model_dir, ner_model_dir, translate_model_dir) -> dict:
    dirs = {"classify": textcat_model_dir, "tag": ner_model_dir, "translate": translate_model_dir}
    return {task: Predictor.load(path, device="cpu") for task, path in dirs.items()}


def expected(predictors: dict, task: str, texts: list[str]) -> list[dict]:
    options = {"beam_size": 2} if task == "translate" else {}  # the server runs with BILSTM_TRANSLATE_BEAM_SIZE=2
    return [r.to_dict() for r in predictors[task].predict(texts, **options)]


def assert_same(task: str, got: list[dict], want: list[dict]) -> None:
    """Equal results: labels, tags, spans and translations exactly; scores to float tolerance (batching)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if task == "classify":
            assert g["label"] == w["label"] and g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-5)
        elif task == "tag":
            assert (g["tokens"], g["tags"]) == (w["tokens"], w["tags"])
            assert [(e["start"], e["end"], e["label"]) for e in g["entities"]] == \
                   [(e["start"], e["end"], e["label"]) for e in w["entities"]]
        else:
            assert (g["source"], g["translation"]) == (w["source"], w["translation"])
            assert g["score"] == pytest.approx(w["score"], abs=1e-4)


def test_readyz_is_200_only_with_models_loaded(server, client):
    assert set(server.readyz_seen) <= {0, 503, 200} and server.readyz_seen[-1] == 200
    assert client.get("/livez").status_code == 200
    # The first 200 from /readyz means every endpoint answers at once (no 503 "still loading").
    for task, texts in TEXTS.items():
        assert client.post(f"/{task}", json={"texts": texts[:1]}).status_code == 200


@pytest.mark.parametrize("task", list(TEXTS))
def test_endpoint_returns_the_predictor_results_in_order(client, predictors, task):
    response = client.post(f"/{task}", json={"texts": TEXTS[task]})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_same(task, response.json(), expected(predictors, task, TEXTS[task]))


def test_tag_entities_carry_character_offsets(client):
    text = TEXTS["tag"][0]
    for entity in client.post("/tag", json={"texts": [text]}).json()[0]["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["text"]


BAD_REQUESTS = [  # (body, content type, status, words in the message)
    (b"", "application/json", 400, "empty"),
    (b"not json", "application/json", 400, "not valid JSON"),
    (b'{"texts": ["a"', "application/json", 400, "not valid JSON"),
    (b"\xff\xfe", "application/json", 400, "not valid JSON"),
    (b"[1, 2]", "application/json", 422, "object"),
    (b"null", "application/json", 422, "object"),
    (b'{"text": ["a"]}', "application/json", 422, "texts"),
    (b'{"texts": "a single string"}', "application/json", 422, "array"),
    (b'{"texts": [1, 2]}', "application/json", 422, "string"),
    (b'{"texts": [["nested"]]}', "application/json", 422, "string"),
    (b'{"texts": []}', "application/json", 422, "at least 1"),
    (b'{"texts": [""]}', "application/json", 422, "texts.0"),
    (b'{"texts": ["fine", "   \\n\\t"]}', "application/json", 422, "blank"),
    (b'{"texts": ["fine", "\\u0000\\u0007"]}', "application/json", 422, "blank"),
    (b'{"texts": ["lone \\ud800 surrogate"]}', "application/json", 422, "surrogate"),
    (b'{"texts": ["ok", "\\udfff"]}', "application/json", 422, "texts.1"),
    (b'{"texts": ["ok"], "beam_size": 3}', "application/json", 422, "beam_size"),
    (b'{"texts": ["ok"]}', "text/plain", 415, "application/json"),
    (b'{"texts": ["ok"]}', "application/x-www-form-urlencoded", 415, "application/json"),
    (json.dumps({"texts": ["a"] * 9}).encode(), "application/json", 413, "at most 8"),
    (json.dumps({"texts": ["a" * 201]}).encode(), "application/json", 413, "200 characters"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "words"), BAD_REQUESTS)
@pytest.mark.parametrize("task", list(TEXTS))
def test_bad_requests_get_a_clear_4xx(client, task, body, content_type, status, words):
    response = client.post(f"/{task}", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words.lower() in error.lower() or words in json.dumps(response.json().get("detail"))


def test_body_over_the_byte_limit_is_413_without_reading_it(client):
    response = client.post("/classify", content=b"x" * 50_000, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["error"]


def test_wrong_method_and_unknown_route_answer_json(client):
    wrong_method = client.get("/classify")
    assert wrong_method.status_code == 405 and wrong_method.headers["content-type"] == "application/json"
    assert "POST" in wrong_method.headers["allow"] and "does not take GET" in wrong_method.json()["error"]
    for method, path in (("POST", "/nope"), ("GET", "/nope/deeper"), ("DELETE", "/x")):
        response = client.request(method, path)
        assert response.status_code == 404 and response.headers["content-type"] == "application/json"
        assert response.json()["error"].startswith(f"no route {path!r}")


def test_the_openapi_ui_is_where_the_docs_say_and_needs_no_internet(client):
    for path in ("/docs", "/"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="swagger-ui"' in page.text and "http" not in page.text.lower()  # nothing from the internet
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and all(client.get(asset).status_code == 200 for asset in assets)
    initializer = client.get("/static_content/swagger-initializer.js").text
    assert 'url: "./docs.json"' in initializer
    assert "/classify" in client.get("/docs.json").json()["paths"]


def test_bad_requests_never_fail_the_requests_batched_with_them(client, predictors):
    """64 concurrent requests, a third of them invalid: the valid ones all get their own right answers."""
    good = TEXTS["classify"] * 2
    bodies = [({"texts": [good[i % len(good)]]} if i % 3 else {"texts": ["   "]}) for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda body: client.post("/classify", json=body), bodies))
    want = {text: r for text, r in zip(good, expected(predictors, "classify", good), strict=True)}
    for body, response in zip(bodies, responses, strict=True):
        if body["texts"][0].strip():
            assert response.status_code == 200, response.text
            assert_same("classify", response.json(), [want[body["texts"][0]]])
        else:
            assert response.status_code == 422


def test_openapi_schema_states_the_contract(client):
    spec = client.get("/docs.json").json()
    for task in TEXTS:
        assert "post" in spec["paths"][f"/{task}"]
    text = json.dumps(spec)
    assert '"maxItems": 8' in text and '"maxLength": 200' in text and '"minLength": 1' in text
    for name in ("ClassifyResult", "TagResult", "TranslateResult", "EntityResult"):
        assert name in spec["components"]["schemas"]


def test_server_log_has_no_traceback(server, client):
    client.post("/classify", json={"texts": ["still alive"]}).raise_for_status()
    assert "Traceback" not in server.log_text()


def test_metrics_endpoint_reports_adaptive_batching(client):
    text = client.get("/metrics").text
    assert "adaptive_batch_size" in text


@pytest.mark.parametrize("task", list(TEXTS))
def test_many_texts_in_one_request_keep_their_order(client, predictors, task):
    texts = (TEXTS[task] * 4)[:8]
    response = client.post(f"/{task}", json={"texts": texts})
    assert response.status_code == 200
    assert_same(task, response.json(), expected(predictors, task, texts))


def test_client_errors_are_json_objects(client):
    response = client.post("/classify", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("the request body is not valid JSON")


def test_translate_attention_is_opt_in_and_matches_the_predictor(client, predictors):
    texts = TEXTS["translate"]
    plain = client.post("/translate", json={"texts": texts}).json()
    assert all("attention" not in result for result in plain)
    assert client.post("/translate", json={"texts": texts, "attention": False}).json() == plain
    answer = client.post("/translate", json={"texts": texts, "attention": True})
    assert answer.status_code == 200, answer.text
    want = [r.to_dict() for r in predictors["translate"].predict(texts, beam_size=2, return_attention=True)]
    for got, expect in zip(answer.json(), want, strict=True):
        assert got["translation"] == expect["translation"]
        assert (got["source_tokens"], got["target_tokens"]) == (expect["source_tokens"], expect["target_tokens"])
        assert len(got["attention"]) == len(got["target_tokens"])
        assert all(len(row) == len(got["source_tokens"]) for row in got["attention"])
        assert all(sum(row) == pytest.approx(1, abs=1e-3) for row in got["attention"])  # a distribution per row
        for got_row, expect_row in zip(got["attention"], expect["attention"], strict=True):
            assert got_row == pytest.approx(expect_row, abs=1e-4)


@pytest.mark.parametrize("body, status, says", [
    ({"texts": ["Ein Hund."], "attention": "yes"}, 422, "attention"),
    ({"texts": ["Ein Hund."], "attention": 1}, 422, "attention"),
    ({"texts": [""], "attention": True}, 422, "texts.0"),
    ({"texts": ["x" * 201], "attention": True}, 413, "longer than the limit"),
    ({"texts": ["Ein Hund."], "attention": True, "beam": 3}, 422, "beam"),
])
def test_translate_attention_option_is_validated(client, body, status, says):
    answer = client.post("/translate", json=body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]


def test_attention_option_is_for_translate_only(client):
    answer = client.post("/classify", json={"texts": ["Fine."], "attention": True})
    assert answer.status_code == 422 and "attention" in answer.json()["error"]


def test_models_route_lists_what_is_loaded(client, predictors):
    listing = client.get("/models").json()
    assert listing["ready"] is True and listing["error"] is None
    by_task = {model["task"]: model for model in listing["models"]}
    assert set(by_task) == {"classify", "tag", "translate", "lm"}
    assert by_task["classify"]["route"] == "/classify"
    assert by_task["classify"]["labels"] == predictors["classify"].labels
    assert by_task["lm"]["routes"] == ["/score", "/generate"]


def test_openapi_schema_documents_the_gate_options(client):
    schema = client.get("/docs.json").json()
    body = schema["paths"]["/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["attention"]["type"] == "boolean"
    assert "texts" in body["properties"]
    assert "/ui" in schema["paths"] and "/models" in schema["paths"]
    # the other routes keep BentoML's own request schema (texts only)
    classify = schema["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "attention" not in json.dumps(classify)


def test_the_unbatched_twins_are_internal(client):
    """A lone request is routed by the gate to /<route>_unbatched; that route is not reachable from outside."""
    for route in ("/classify_unbatched", "/tag_unbatched"):
        answer = client.post(route, json={"texts": ["Fine."]})
        assert answer.status_code == 404 and "no route" in answer.json()["error"]
    assert not [path for path in client.get("/docs.json").json()["paths"] if path.endswith("_unbatched")]
