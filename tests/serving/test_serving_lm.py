"""The language model over real HTTP: POST /score (the task's route) and POST /generate."""

from __future__ import annotations

import pytest

from toolkit import Predictor

TEXTS = ["the cat runs behind the barn .", "barn the behind runs cat the ."]


@pytest.fixture(scope="module")
def lm(lm_model_dir):
    return Predictor.load(lm_model_dir, device="cpu")


def test_score_answers_what_the_predictor_says(client, lm):
    response = client.post("/score", json={"texts": TEXTS})
    assert response.status_code == 200, response.text
    got = response.json()
    for result, want in zip(got, lm.score(TEXTS), strict=True):
        assert result["tokens"] == want.tokens
        assert result["perplexity"] == pytest.approx(want.perplexity, rel=1e-4)


def test_generate_is_reproducible_with_a_seed(client, lm):
    body = {"prompts": ["the farmer", ""], "max_tokens": 10, "seed": 3, "top_k": 5}
    first, second = client.post("/generate", json=body), client.post("/generate", json=body)
    assert first.status_code == 200, first.text
    assert first.json() == second.json()
    want = lm.generate(["the farmer", ""], max_tokens=10, seed=3, top_k=5)
    assert [row["tokens"] for row in first.json()] == [g.tokens for g in want]
    assert first.json()[0]["full_text"].startswith("the farmer")


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"prompts": []}, 422, "at least 1"),
    ({"prompts": ["x"], "max_tokens": 0}, 422, "max_tokens"),
    ({"prompts": ["x"], "max_tokens": 100000}, 422, "max_tokens"),
    ({"prompts": ["x"], "top_p": 0}, 422, "top_p"),
    ({"prompts": ["x"], "temperature": -1}, 422, "temperature"),
    ({"prompts": ["x"], "beam": 3}, 422, "beam"),
    ({"prompts": ["x \\ud800"]}, 422, "surrogate"),
    ({"prompts": ["x"] * 9}, 413, "at most 8"),
    ({"prompts": ["x" * 201]}, 413, "200 characters"),
])
def test_bad_generate_requests_get_a_clear_4xx(client, body, status, words):
    import json

    response = client.post("/generate", content=json.dumps(body).replace("\\\\ud800", "\\ud800").encode(),
                           headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"] or words in json.dumps(response.json().get("detail"))
