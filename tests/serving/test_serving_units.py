"""Fast checks without a server: settings, the request gate (in-process ASGI), devices, `bilstm serve` errors."""

from __future__ import annotations

import asyncio
import gc
import json
import os

import httpx
import pytest

from serving.gate import RequestGate
from serving.lanes import DropOverloadTracebacks, LaneLimits, RouteLanes
from serving.registry import ModelRegistry, ModelSource, autocast_dtype, pick_device, resolve_sources
from serving.schemas import model_routes
from serving.settings import ServeSettings
from tests.conftest import copy_with_wrong_hidden_size, run_bilstm
from toolkit.errors import ConfigError, ModelDirError

# BentoML 1.4.40's own IO models call a pydantic API deprecated in 2.11; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")


def test_settings_defaults_and_overrides():
    default = ServeSettings.from_env({})
    limits = (default.max_texts, default.max_chars, default.max_batch_size, default.max_latency_ms)
    assert limits == (64, 5000, 64, 2000)
    assert default.service_config()["workers"] == 1 and "gpu" not in default.service_config()["resources"]
    env = {"BILSTM_MODEL_DIRS": os.pathsep.join(["a", "b", ""]), "BILSTM_GPUS": "2", "BILSTM_PRECISION": "BF16",
           "BILSTM_ACCESS_LOG": "0", "BILSTM_TRANSLATE_BEAM_SIZE": "1"}
    custom = ServeSettings.from_env(env)
    assert custom.model_dirs == ("a", "b") and custom.precision == "bf16" and custom.translate_beam_size == 1
    config = custom.service_config()
    assert config["workers"] == 2 and config["resources"] == {"gpu": 2}
    assert config["logging"] == {"access": {"enabled": False}}


@pytest.mark.parametrize(("name", "value", "words"), [
    ("BILSTM_MAX_TEXTS", "many", "not an integer"), ("BILSTM_MAX_CHARS", "0", "at least 1"),
    ("BILSTM_PRECISION", "int8", "fp32, bf16, fp16"), ("BILSTM_DEVICE", "tpu", "auto, cpu, cuda"),
    ("BILSTM_MAX_BATCH_SIZE", "1", "at least 2"),  # BentoML refuses 1 in every worker: a crash loop, not an error
    ("BILSTM_TRANSLATE_BEAM_SIZE", "1000", "at most 64"), ("BILSTM_MAX_NEW_TOKENS", "5000", "at most 2048"),
    ("BILSTM_GENERATE_CONCURRENCY", "0", "at least 1"), ("BILSTM_MAX_IN_FLIGHT", "x", "not an integer"),
    ("BILSTM_GENERATE_MAX_IN_FLIGHT", "0", "at least 1"),
])
def test_bad_settings_name_the_variable(name, value, words):
    with pytest.raises(ConfigError, match=name) as error:
        ServeSettings.from_env({name: value})
    assert words in str(error.value)


def test_devices_and_precision_on_cpu():
    import torch

    assert pick_device("cpu", 3) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto", 1) == torch.device("cpu")
        with pytest.raises(ConfigError, match="no CUDA device"):
            pick_device("cuda", 1)
    assert autocast_dtype("bf16", torch.device("cpu")) is None  # autocast only on CUDA


def test_resolve_sources_one_model_per_task(textcat_model_dir, ner_model_dir, tmp_path):
    sources = resolve_sources([(ner_model_dir, "ner"), (textcat_model_dir, "textcat")])
    assert [s.task for s in sources] == ["classify", "tag"]
    with pytest.raises(ConfigError, match="two 'classify' models"):
        resolve_sources([(textcat_model_dir, "a"), (textcat_model_dir, "b")])
    with pytest.raises(ModelDirError, match=r"meta\.json is missing"):
        resolve_sources([(tmp_path, "empty")])


def echo_app(status: int = 200, answer: bytes | None = None):
    """Stands in for BentoML: answers ``status`` with the body it was handed (or ``answer``)."""
    async def app(scope, receive, send):
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body if answer is None else answer})

    return app


def gate_client(registry: ModelRegistry, app=None, lanes: RouteLanes | None = None) -> httpx.AsyncClient:
    routes = model_routes(4, 10, 16)
    lanes = lanes or RouteLanes(dict.fromkeys(routes, LaneLimits(1, 8)))
    gate = RequestGate(app or echo_app(), registry, routes, lanes=lanes, max_texts=4, max_chars=10,
                       max_body_bytes=1000)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://gate")


def call(registry: ModelRegistry, path: str, body: bytes | None = None, method: str = "POST") -> httpx.Response:
    async def go() -> httpx.Response:
        async with gate_client(registry) as client:
            return await client.request(method, path, content=body)

    return asyncio.run(go())


def test_gate_says_503_while_loading_then_passes_the_body_on(textcat_model_dir):
    registry = ModelRegistry()
    registry.configure([ModelSource("classify", textcat_model_dir, "textcat")], ServeSettings())
    loading = call(registry, "/classify", b'{"texts": ["a"]}')
    assert loading.status_code == 503 and "loading" in loading.json()["error"]
    assert loading.headers["retry-after"] == "1"
    registry._loaded.set()  # what the loading thread does when it is done
    assert registry.ready
    passed = call(registry, "/classify", b'{"texts": ["a"]}')
    assert passed.status_code == 200 and passed.content == b'{"texts": ["a"]}'  # replayed unchanged
    missing = call(registry, "/translate", b'{"texts": ["a"]}')
    assert missing.status_code == 404 and missing.json()["loaded_tasks"] == ["classify"]
    assert call(registry, "/livez", method="GET").status_code == 200  # other routes are not gated
    assert call(registry, "/classify", b'{"texts": ["a", "b", "c", "d", "e"]}').status_code == 413
    assert call(registry, "/classify", json.dumps({"texts": ["x" * 11]}).encode()).status_code == 413
    assert call(registry, "/classify", b"x" * 1001).status_code == 413


def ready_registry(model_dir) -> ModelRegistry:
    registry = ModelRegistry()
    registry.configure([ModelSource("classify", model_dir, "textcat"), ModelSource("lm", model_dir, "lm")],
                       ServeSettings())
    registry._loaded.set()
    return registry


def test_a_full_lane_is_refused_with_429_naming_the_route_while_others_pass(textcat_model_dir, caplog):
    """Two /generate requests are admitted (one runs, one waits), the third is refused; /classify is unaffected."""
    release = asyncio.Event()

    async def slow_generate(scope, receive, send):
        if scope["path"] == "/generate":
            await release.wait()
        await echo_app()(scope, receive, send)

    routes = model_routes(4, 10, 16)
    lanes = RouteLanes({route: LaneLimits(1, 2) if route == "/generate" else LaneLimits(1, 8) for route in routes})
    lanes.mean_seconds["/generate"] = 2.5  # as if each generation had taken 2.5 s
    body = b'{"prompts": ["a"]}'

    async def go():
        async with gate_client(ready_registry(textcat_model_dir), slow_generate, lanes) as client:
            admitted = [asyncio.create_task(client.post("/generate", content=body)) for _ in range(2)]
            while lanes.in_flight["/generate"] < 2:
                await asyncio.sleep(0.01)
            refused = await client.post("/generate", content=body)
            other = await client.post("/classify", content=b'{"texts": ["a"]}')
            release.set()
            return refused, other, await asyncio.gather(*admitted)

    with caplog.at_level("WARNING", logger="bentoml.bilstm"):
        refused, other, admitted = asyncio.run(go())
    assert refused.status_code == 429
    payload = refused.json()
    assert payload["route"] == "/generate" and payload["limit"] == 2 and "saturated" in payload["error"]
    # two requests ahead of a free slot, 2.5 s each, one at a time: 5 s
    assert refused.headers["retry-after"] == "5" and payload["retry_after_s"] == 5
    assert other.status_code == 200 and [r.status_code for r in admitted] == [200, 200]
    lines = [r for r in caplog.records if "429 /generate" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None  # one line, no traceback
    assert lanes.in_flight == dict.fromkeys(routes, 0)  # every admitted request left its lane


def test_bentoml_overload_and_list_wrapped_errors_are_restated(textcat_model_dir, caplog):
    """BentoML's batcher sheds with a generic 503; the gate says which route and when to retry, in one log line."""
    generic = b'{"error":"An unexpected error has occurred, please check the server log."}'

    async def go(app):
        async with gate_client(ready_registry(textcat_model_dir), app) as client:
            return await client.post("/classify", content=b'{"texts": ["a"]}')

    with caplog.at_level("WARNING", logger="bentoml.bilstm"):
        shed = asyncio.run(go(echo_app(503, generic)))
    assert shed.status_code == 503 and shed.json()["route"] == "/classify"
    assert "overloaded" in shed.json()["error"] and int(shed.headers["retry-after"]) >= 1
    assert sum("503 /classify" in r.getMessage() for r in caplog.records) == 1
    wrapped = asyncio.run(go(echo_app(422, b'[{"error": "a text could not be processed"}]')))
    assert wrapped.status_code == 422 and wrapped.json() == {"error": "a text could not be processed"}


def test_overload_tracebacks_are_filtered_from_bentomls_log():
    import logging

    from bentoml.exceptions import ServiceUnavailable

    def record(error: Exception) -> logging.LogRecord:
        try:
            raise error
        except Exception:
            import sys

            return logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on /classify [POST]", (),
                                     sys.exc_info())

    keep = DropOverloadTracebacks()
    assert not keep.filter(record(ServiceUnavailable("process is overloaded")))
    assert keep.filter(record(RuntimeError("a real bug")))


def test_gate_reports_a_failed_load(textcat_model_dir):
    registry = ModelRegistry()
    registry.configure([], ServeSettings())
    registry._loaded.set()
    response = call(registry, "/classify", b'{"texts": ["a"]}')
    assert response.status_code == 503 and "no models configured" in response.json()["error"]
    registry.configure([ModelSource("classify", textcat_model_dir, "textcat")], ServeSettings())
    registry.error = "loading the models failed: disk on fire"
    response = call(registry, "/classify", b'{"texts": ["a"]}')
    assert response.status_code == 503 and "disk on fire" in response.json()["error"]


def test_registry_loads_and_predicts(textcat_model_dir):
    registry = ModelRegistry()
    registry.configure([ModelSource("classify", textcat_model_dir, "textcat")], ServeSettings(device="cpu"))
    registry.start().join(120)
    assert registry.ready and registry.wait(0)
    (result,) = registry.predict("classify", ["A lazy, cynical sequel."], batch_size=8)
    assert set(result) == {"label", "score", "probabilities"}
    assert gc.get_freeze_count() > 10_000  # the loaded state is out of the garbage collector's full passes
    gc.unfreeze()  # this is the test process, not a worker


def test_bilstm_serve_refuses_bad_input_before_starting(textcat_model_dir, tmp_path):
    result = run_bilstm("serve", str(tmp_path / "missing"))
    assert result.returncode == 2 and "model directory not found" in result.stderr
    result = run_bilstm("serve", str(textcat_model_dir), str(textcat_model_dir))
    assert result.returncode == 2 and "two 'classify' models" in result.stderr
    result = run_bilstm("serve")
    assert result.returncode == 2 and "at least one MODEL_DIR" in result.stderr
    result = run_bilstm("serve", str(textcat_model_dir), "--max-texts", "0")
    assert result.returncode == 2 and "--max-texts: 0 must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("options", "words"), [
    (["--port", "70000"], "70000 is not a TCP port (1..65535)"),
    (["--beam-size", "1000"], "BILSTM_TRANSLATE_BEAM_SIZE=1000 must be at most 64"),
    (["--max-new-tokens", "100000"], "BILSTM_MAX_NEW_TOKENS=100000 must be at most 2048"),
    (["--generate-concurrency", "4", "--generate-max-in-flight", "2"], "below BILSTM_GENERATE_CONCURRENCY=4"),
])
def test_serve_dry_run_refuses_what_the_live_server_would(textcat_model_dir, options, words):
    result = run_bilstm("serve", str(textcat_model_dir), *options, "--dry-run")
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bilstm_serve_dry_run_shows_the_bentoml_command(textcat_model_dir):
    result = run_bilstm("serve", str(textcat_model_dir), "--port", "3999", "--max-batch-size", "32",
                        "--no-access-log", "--generate-max-in-flight", "3", "--timeout-s", "30", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "BILSTM_MAX_BATCH_SIZE='32'" in result.stdout and "BILSTM_ACCESS_LOG='0'" in result.stdout
    assert "BILSTM_GENERATE_MAX_IN_FLIGHT='3'" in result.stdout and "BILSTM_TIMEOUT_S='30'" in result.stdout
    assert "bentoml serve serving.service:BilstmService --host 127.0.0.1 --port 3999" in result.stdout


def test_a_failing_batch_is_retried_text_by_text():
    """A model error on a batch must not fail every request in it: each text is retried alone."""
    from bentoml.exceptions import UnprocessableEntity

    from serving.service import BilstmService

    class FlakyRegistry:
        def predict(self, task, texts, batch_size):
            if len(texts) > 1 or texts[0] == "poison":
                raise RuntimeError("boom")
            return [{"label": texts[0]}]

    holder = type("Holder", (), {"registry": FlakyRegistry()})()
    run = BilstmService.inner._run
    assert run(holder, "classify", ["a", "b"]) == [{"label": "a"}, {"label": "b"}]
    with pytest.raises(UnprocessableEntity, match="could not be processed"):
        run(holder, "classify", ["a", "poison"])


def test_a_lone_request_the_model_refuses_gets_its_own_422():
    from serving.service import BilstmService
    from toolkit.errors import InputError

    class RefusingRegistry:
        def predict(self, task, texts, batch_size):
            raise InputError("prompt 0 has 600 tokens, over the limit of 512")

    holder = type("Holder", (), {"registry": RefusingRegistry()})()
    answer = BilstmService.inner._run(holder, "classify", ["a"], batched=False)
    assert answer.status_code == 422 and b"over the limit of 512" in answer.body


def test_serve_loads_every_model_before_starting(textcat_model_dir, tmp_path):
    """Weights that do not fit the config pass the checksums but must still stop `bilstm serve` (and --dry-run)."""
    copy = copy_with_wrong_hidden_size(textcat_model_dir, tmp_path / "copy")
    for extra in (["--dry-run"], []):
        result = run_bilstm("serve", str(copy), *extra)
        assert result.returncode == 2, result.stderr
        assert "weights do not match the model config" in result.stderr and "Traceback" not in result.stderr
