"""docker-compose.yml against the compose-spec schema (no Docker engine here), plus what it must contain."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def check_jsonschema() -> str:
    found = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    if found is None:
        pytest.fail("check-jsonschema is missing: pip install -c constraints.txt -r requirements-dev.txt")
    return found


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid_against_the_compose_spec():
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_does_reject_a_bad_compose_file(tmp_path):
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  api:\n    image: x\n    healthcheck: {test: 5}\n    gpus_please: true\n")
    result = validate(bad)
    assert result.returncode == 1 and "gpus_please" in result.stdout


def test_api_reserves_a_gpu_checks_readyz_and_mounts_the_models():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    api = services["api"]
    (device,) = api["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert any(v["target"] == "/models" and v["read_only"] for v in api["volumes"])
    assert api["entrypoint"][-1] == "serving.service:BilstmService"
    cpu = services["api-cpu"]
    assert cpu["profiles"] == ["cpu"] and cpu["environment"]["BILSTM_DEVICE"] == "cpu"
    assert "reservations" not in cpu.get("deploy", {}).get("resources", {})
    label = services["label"]
    assert "bilstm label" in label["command"][0]
    assert {v["target"] for v in label["volumes"]} == {"/models", "/data/in", "/data/out"}


def test_dockerfile_installs_the_pinned_torch_and_runs_bilstm():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile and "-c constraints.txt" in dockerfile
    assert 'ENTRYPOINT ["bilstm"]' in dockerfile and "/readyz" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git"} <= set(ignored)
