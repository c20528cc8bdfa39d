"""Fast checks without a server: settings, the request gate (in-process ASGI), devices, `bilstm serve` errors."""

from __future__ import annotations

import asyncio
import gc
import json
import os

import httpx
import pytest

from serving.gate import RequestGate
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


def gate_client(registry: ModelRegistry) -> httpx.AsyncClient:
    async def app(scope, receive, send):  # stands in for BentoML: echoes the body it was handed
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    gate = RequestGate(app, registry, model_routes(4, 10, 16), max_texts=4, max_chars=10, max_body_bytes=1000)
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


def test_bilstm_serve_dry_run_shows_the_bentoml_command(textcat_model_dir):
    result = run_bilstm("serve", str(textcat_model_dir), "--port", "3999", "--max-batch-size", "32",
                        "--no-access-log", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "BILSTM_MAX_BATCH_SIZE='32'" in result.stdout and "BILSTM_ACCESS_LOG='0'" in result.stdout
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


def test_serve_loads_every_model_before_starting(textcat_model_dir, tmp_path):
    """Weights that do not fit the config pass the checksums but must still stop `bilstm serve` (and --dry-run)."""
    copy = copy_with_wrong_hidden_size(textcat_model_dir, tmp_path / "copy")
    for extra in (["--dry-run"], []):
        result = run_bilstm("serve", str(copy), *extra)
        assert result.returncode == 2, result.stderr
        assert "weights do not match the model config" in result.stderr and "Traceback" not in result.stderr
