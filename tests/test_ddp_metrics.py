"""Validation metrics under DDP are corpus-level: two CPU processes score an odd-sized dev set exactly like one.

Lightning's default distributed sampler would pad the two shards to equal size by repeating an example, and
entity F1 averaged over shards is not the corpus F1; both would make these figures differ.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, run_bilstm


def validate(config: str, checkpoint: Path, dev_file: Path, devices: int, logs: Path) -> dict[str, float]:
    """`bilstm validate` with a CSV logger; the logged validation metrics."""
    result = run_bilstm("validate", "--config", config, "--ckpt_path", str(checkpoint),
                        "--data.init_args.dev_file", str(dev_file), "--trainer.devices", str(devices),
                        "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.accelerator", "cpu",
                        "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
                        "--trainer.logger.init_args.save_dir", str(logs), "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    if devices > 1:
        assert f"MEMBER: 2/{devices}" in result.stdout + result.stderr
    (row,) = csv.DictReader((logs / "lightning_logs/version_0/metrics.csv").open())
    return {key: float(value) for key, value in row.items() if key.startswith("val_")}


@pytest.mark.slow
def test_classification_accuracy_under_ddp_equals_one_process(textcat_run, tmp_path):
    dev = tmp_path / "dev37.jsonl"
    dev.write_text("".join((SAMPLES / "textcat/dev.jsonl").read_text().splitlines(keepends=True)[:37]))
    checkpoint = textcat_run / "lightning_logs/version_0/checkpoints/last.ckpt"
    one = validate("configs/textcat_sample.yaml", checkpoint, dev, 1, tmp_path / "one")
    two = validate("configs/textcat_sample.yaml", checkpoint, dev, 2, tmp_path / "two")
    assert round(one["val_acc"] * 37) == pytest.approx(one["val_acc"] * 37, abs=1e-4)  # a count out of 37
    assert two["val_acc"] == one["val_acc"] and two["val_macro_f1"] == one["val_macro_f1"]
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)


@pytest.mark.slow
def test_entity_f1_under_ddp_equals_one_process(ner_run, tmp_path):
    sentences = (SAMPLES / "ner/dev.conll").read_text().strip().split("\n\n")
    dev = tmp_path / "dev41.conll"
    dev.write_text("\n\n".join(sentences[:41]) + "\n")
    checkpoint = ner_run / "lightning_logs/version_0/checkpoints/last.ckpt"
    one = validate("configs/ner_sample.yaml", checkpoint, dev, 1, tmp_path / "one")
    two = validate("configs/ner_sample.yaml", checkpoint, dev, 2, tmp_path / "two")
    assert 0 < one["val_f1"] < 1
    for key in ("val_precision", "val_recall", "val_f1"):
        assert two[key] == one[key], key
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
