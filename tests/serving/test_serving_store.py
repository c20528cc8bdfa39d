"""Models imported into the BentoML store, served by a plain `bentoml serve`; `bentoml build` offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import ROOT
from tests.serving.conftest import LIMITS, start_server, stop_server
from toolkit.meta import FORMAT_VERSION
from toolkit.version import __version__


def run(argv: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
                **env}
    return subprocess.run(argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def store(textcat_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh BentoML home holding the classifier; returns (home, tag)."""
    home = tmp_path_factory.mktemp("store_home")
    result = run([sys.executable, "-m", "serving.import_model", str(textcat_model_dir), "--label", "stage=test"], home)
    assert result.returncode == 0, result.stderr
    return home, result.stdout.strip()


@pytest.fixture(scope="module")
def store_server(store, tmp_path_factory: pytest.TempPathFactory):
    home, _ = store
    argv = [sys.executable, "-m", "bentoml", "serve", "serving.service:BilstmService", "--host", "127.0.0.1",
            "--port", "{port}"]
    env = {**LIMITS, "BENTOML_HOME": str(home), "BILSTM_BENTO_MODELS": "bilstm-textcat:latest",
           "BILSTM_MODEL_DIRS": ""}
    running = start_server(argv, env, tmp_path_factory.mktemp("store_serve") / "serve.log")
    yield running
    stop_server(running)


def test_import_copies_the_model_directory(store, textcat_model_dir):
    home, tag = store
    assert tag.startswith("bilstm-textcat:")
    name, version = tag.split(":")
    stored = home / "models" / name / version
    for item in ("meta.json", "model.safetensors", "vocab.json"):
        assert (stored / item).read_bytes() == (textcat_model_dir / item).read_bytes()
    info = yaml.safe_load((stored / "model.yaml").read_text())
    assert info["labels"] == {"task": "classify", "toolkit_version": __version__, "format_version": str(FORMAT_VERSION),
                              "stage": "test"}


def test_import_refuses_a_broken_directory(tmp_path, capsys):
    from serving.import_model import main

    (tmp_path / "meta.json").write_text("{}")
    assert main([str(tmp_path)]) == 2  # fails on the directory, before the store is touched
    assert "format_version" in capsys.readouterr().err


def test_plain_bentoml_serve_of_a_stored_model(store_server):
    with httpx.Client(base_url=store_server.url, timeout=30) as client:
        response = client.post("/classify", json={"texts": ["A lazy, cynical sequel. Avoid."]})
        assert response.status_code == 200 and response.json()[0]["label"] in ("pos", "neg")
        missing = client.post("/tag", json={"texts": ["Bonn"]})
        assert missing.status_code == 404
        assert missing.json()["loaded_tasks"] == ["classify"] and "classify" in missing.json()["error"]


def test_stopping_the_server_leaves_no_process(store_server):
    assert len(store_server.pids) >= 2  # the circus arbiter and a worker
    stop_server(store_server)
    alive = [pid for pid in store_server.pids if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_bentoml_build_works_offline_with_the_model(store):
    home, tag = store
    result = run([sys.executable, "-m", "bentoml", "build", "-f", "serving/bentofile.yaml", "."], home,
                 BILSTM_BENTO_MODELS=tag)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (bento,) = [path for path in (home / "bentos" / "bilstm").iterdir() if path.is_dir()]
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert [m["tag"] for m in info["services"][0]["models"]] == [tag]
    requirements = (bento / "env/python/requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "nvidia" not in requirements  # lock_packages: false
    assert (bento / "src/serving/service.py").exists() and (bento / "src/toolkit/predict/base.py").exists()
