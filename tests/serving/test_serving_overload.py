"""A short mixed load against a real `bilstm serve`: a saturated /generate must not starve /classify (issue 23).

The server admits two /generate requests per worker (one running, one queued); six are sent at once, long ones,
while /classify requests keep coming. No timings are asserted: what is checked is who was answered with what,
what the refusals say, what the log holds, and that the server answers normally once the load is gone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import Server, bilstm_serve, start_server, stop_server

# Long continuations from the tiny LM: a flat distribution rarely ends the text.
LONG = {"prompts": ["the farmer"] * 8, "max_tokens": 256, "temperature": 100.0, "seed": 1}


@pytest.fixture(scope="module")
def overload_server(textcat_model_dir: Path, lm_model_dir: Path, tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("overload") / "serve.log"
    running = start_server(bilstm_serve(str(textcat_model_dir), str(lm_model_dir)),
                           {"BILSTM_GENERATE_MAX_IN_FLIGHT": "2", "BILSTM_GENERATE_CONCURRENCY": "1"}, log)
    yield running
    stop_server(running)


def test_classify_is_answered_beside_a_saturated_generate(overload_server: Server):
    async def load() -> tuple[list[httpx.Response], list[tuple[int, bool]]]:
        async with httpx.AsyncClient(base_url=overload_server.url, timeout=120) as client:
            generations = [asyncio.create_task(client.post("/generate", json=LONG)) for _ in range(6)]
            classified: list[tuple[int, bool]] = []  # (status, whether a generation was still running then)

            async def classify_until_done() -> None:
                texts = ["A moving, beautifully shot film.", "A dull waste of two hours."]
                while not all(task.done() for task in generations) or len(classified) < 20:
                    response = await client.post("/classify", json={"texts": texts})
                    classified.append((response.status_code, not all(task.done() for task in generations)))

            await asyncio.gather(*(classify_until_done() for _ in range(4)))
            return await asyncio.gather(*generations), classified

    generations, classified = asyncio.run(load())
    assert {status for status, _ in classified} == {200}  # never refused, never failed
    assert sum(during for _, during in classified) >= 2  # answered while generations were running
    statuses = sorted(response.status_code for response in generations)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 2, statuses
    for refused in (response for response in generations if response.status_code == 429):
        payload = refused.json()
        assert payload["route"] == "/generate" and "saturated" in payload["error"] and payload["limit"] == 2
        assert int(refused.headers["retry-after"]) == payload["retry_after_s"] >= 1
    log = overload_server.log_text()
    assert log.count("bilstm: 429 /generate") == statuses.count(429)  # one line per refusal
    assert "Traceback" not in log
    assert "[service:bilstm-generator:1] bilstm: loaded lm model" in log  # sampling ran in its own process
    # The lanes drained: the next requests of both routes are answered at once, not refused.
    with httpx.Client(base_url=overload_server.url, timeout=120) as client:
        assert client.post("/generate", json={"prompts": ["the"], "max_tokens": 3}).status_code == 200
        assert client.post("/classify", json={"texts": ["Fine."]}).status_code == 200


def test_a_prompt_over_the_token_limit_is_a_422(overload_server: Server):
    response = httpx.post(f"{overload_server.url}/generate", json={"prompts": ["word " * 600]}, timeout=60)
    assert response.status_code == 422, response.text
    assert "600 tokens, over the limit of 512" in response.json()["error"]
    assert "Traceback" not in overload_server.log_text()


def test_underflowing_sampling_values_are_served(overload_server: Server):
    for extreme in ({"temperature": 1e-300}, {"top_p": 1e-320}, {"seed": 2**64 - 1}):
        response = httpx.post(f"{overload_server.url}/generate",
                              content=json.dumps({"prompts": ["the"], "max_tokens": 4, **extreme}),
                              headers={"content-type": "application/json"}, timeout=60)
        assert response.status_code == 200, (extreme, response.text)
    beyond = httpx.post(f"{overload_server.url}/generate", json={"prompts": ["the"], "seed": 2**64}, timeout=60)
    assert beyond.status_code == 422 and "seed" in beyond.json()["error"]
