"""A real BentoML server with `--backend onnx`: it answers what the torch Predictor says (ONNX Runtime inside)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import LIMITS, bilstm_serve, start_server, stop_server
from toolkit import Predictor

pytest.importorskip("onnxruntime")

TEXTS = ["A moving, beautifully shot film.", "A dull, badly acted waste of two hours.", "ok"]


def test_the_onnx_backend_serves_the_same_answers_as_torch(onnx_model_dir: Path, bentoml_home: Path,
                                                           tmp_path: Path):
    server = start_server(bilstm_serve(str(onnx_model_dir), "--backend", "onnx"),
                          {**LIMITS, "BENTOML_HOME": str(bentoml_home)}, tmp_path / "serve.log")
    try:
        response = httpx.post(f"{server.url}/classify", json={"texts": TEXTS}, timeout=60)
        assert response.status_code == 200, response.text
        served = response.json()
        log = server.log_text()
    finally:
        stop_server(server)
    if "bilstm: loaded" in log:  # BentoML passes the service's log lines through at its log level
        assert "(onnx backend)" in log
    expected = Predictor.load(onnx_model_dir, device="cpu").predict(TEXTS)
    assert [item["label"] for item in served] == [item.label for item in expected]
    for item, want in zip(served, expected, strict=True):
        for label, probability in want.probabilities.items():
            assert item["probabilities"][label] == pytest.approx(probability, abs=1e-4)


def test_serve_refuses_onnx_without_an_export_or_on_gpus(textcat_model_dir: Path, onnx_model_dir: Path):
    """What `bilstm serve --dry-run` checks, in-process (the CLI's exit status 2 for these is tested elsewhere)."""
    import argparse

    from serving.cli import build_env, configure
    from toolkit.errors import ConfigError, ModelDirError

    parser = argparse.ArgumentParser()
    configure(parser)
    with pytest.raises(ModelDirError, match="bilstm export"):
        build_env(parser.parse_args([str(textcat_model_dir), "--backend", "onnx", "--dry-run"]), base={})
    with pytest.raises(ConfigError, match="runs on the CPU"):
        build_env(parser.parse_args([str(onnx_model_dir), "--backend", "onnx", "--gpus", "1"]), base={})
