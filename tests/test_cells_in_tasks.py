"""Every task trains with a scripted cell, exports a model directory, and predicts from it after reloading."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_bilstm
from toolkit import Predictor

CASES = [  # (config, encoder option path, cell, a text to predict on)
    ("configs/textcat_sample.yaml", "model.init_args.network.encoder", "mut2", "a wonderful , moving film"),
    ("configs/ner_sample.yaml", "model.init_args.network.encoder", "sru", "John lives in Berlin ."),
    ("configs/translate_sample.yaml", "model.init_args.network.encoder", "lstm_o", "ein mann läuft ."),
    ("configs/lm_sample.yaml", "model.init_args.network.encoder", "mut1", "the cat runs ."),
]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "option", "cell", "text"), CASES, ids=[case[2] for case in CASES])
def test_a_scripted_cell_trains_exports_and_predicts(tmp_path, monkeypatch, config, option, cell, text):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = run_bilstm("fit", "--config", config, "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0",
                        "--trainer.check_val_every_n_epoch", "1", "--trainer.default_root_dir", str(tmp_path),
                        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
                        f"--{option}.cell", cell, f"--{option}.residual", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())
    assert meta["model_config"]["network"]["encoder"]["cell"] == cell
    predictor = Predictor.load(tmp_path / "model", device="cpu")
    alone, batched = predictor.predict([text])[0].to_dict(), predictor.predict([text, text])[1].to_dict()
    assert _rounded(alone) == _rounded(batched)  # batching does not change the answer


def _rounded(value):
    """Floats to 4 places, recursively (a batch of two may sum in another order than a batch of one)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value
