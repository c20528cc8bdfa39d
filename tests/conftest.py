"""Shared fixtures: the bundled samples and one tiny trained model directory per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded during tests
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# The scripted cells' training loops run in plain Python here: torch.compile's first build of each takes about a
# minute on a cold cache. tests/nn/test_cells.py checks the compiled loops against it, once per kind of loop.
os.environ.setdefault("BILSTM_CELL_LOOP", "eager")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
BILSTM = [sys.executable, "-m", "toolkit.cli"]


def run_bilstm(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `bilstm` command in a subprocess and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*BILSTM, *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def fit_config(config: str, root: Path, *options: str) -> Path:
    """`bilstm fit` of ``configs/<config>.yaml`` into ``root`` on the CPU (quiet); returns its model directory."""
    result = run_bilstm("fit", "--config", f"configs/{config}.yaml", "--trainer.default_root_dir", str(root),
                        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", *options)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "model"


def copy_with_wrong_hidden_size(model_dir: Path, target: Path) -> Path:
    """A copy of a classifier model directory whose meta.json no longer fits its weights (checksums still pass)."""
    import json
    import shutil

    shutil.copytree(model_dir, target)
    meta = json.loads((target / "meta.json").read_text())
    meta["model_config"]["network"]["encoder"]["hidden_size"] += 1
    (target / "meta.json").write_text(json.dumps(meta))
    return target


@pytest.fixture(scope="session")
def textcat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bilstm fit` on the bundled sentiment sample (a few epochs); returns the run directory."""
    run_dir = tmp_path_factory.mktemp("textcat_run")
    result = run_bilstm("fit", "--config", "configs/textcat_sample.yaml", "--trainer.max_epochs", "4",
                        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"model directory: {run_dir / 'model'}" in result.stdout
    return run_dir


@pytest.fixture(scope="session")
def textcat_model_dir(textcat_run: Path) -> Path:
    return textcat_run / "model"


@pytest.fixture(scope="session")
def onnx_model_dir(textcat_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample classifier with `bilstm export --onnx --int8` applied (checked parity < 1e-4)."""
    target, backends = exported_copy(textcat_model_dir, tmp_path_factory, "onnx")
    assert backends["onnx"]["max_abs_output_diff"] < 1e-4
    return target


def exported_copy(model_dir: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> tuple[Path, dict]:
    """A copy of ``model_dir`` with `bilstm export --onnx --int8` applied; the ``backends`` the command printed."""
    target = tmp_path_factory.mktemp(name) / "model"
    shutil.copytree(model_dir, target)
    result = run_bilstm("export", str(target), "--onnx", "--int8")
    assert result.returncode == 0, result.stderr[-3000:]
    return target, json.loads(result.stdout)["backends"]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 2-layer BERT with its own word-piece vocabulary, saved like a real model."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny_bert")
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "peter", "black", "##burn", "visited", "bonn", "in",
              "1996", ".", "eu", "re", "##jects", "it", "hi"]
    (root / "vocab.txt").write_text("\n".join(pieces) + "\n")
    wordpiece = BertWordPieceTokenizer(str(root / "vocab.txt"), lowercase=True)
    PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]").save_pretrained(root)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(pieces), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=8)).save_pretrained(root)
    return str(root)


@pytest.fixture(scope="session")
def ner_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bilstm fit` of the BiLSTM-CRF on the bundled CoNLL sample; returns the run directory."""
    run_dir = tmp_path_factory.mktemp("ner_run")
    result = run_bilstm("fit", "--config", "configs/ner_sample.yaml", "--trainer.max_epochs", "6",
                        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def ner_model_dir(ner_run: Path) -> Path:
    return ner_run / "model"


@pytest.fixture(scope="session")
def translate_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bilstm fit` of the tiny translator on samples/translate for a few epochs: the exported model directory
    that the translation tests and the adapter tests (spaCy, serving) share."""
    run_dir = tmp_path_factory.mktemp("translate_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # tiny model on a shared CPU: one thread, no spin-waiting
        result = run_bilstm("fit", "--config", "configs/translate_sample.yaml", "--trainer.max_epochs", "6",
                            "--trainer.check_val_every_n_epoch", "3", "--trainer.num_sanity_val_steps", "0",
                            "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                            "--trainer.accelerator", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"model directory: {run_dir / 'model'}" in result.stdout
    return run_dir / "model"


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bilstm fit` of the tiny word LSTM language model on samples/lm (with a CSV log of every epoch)."""
    run_dir = tmp_path_factory.mktemp("lm_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        result = run_bilstm("fit", "--config", "configs/lm_sample.yaml", "--trainer.max_epochs", "6",
                            "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                            "--trainer.accelerator", "cpu", "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
                            "--trainer.logger.init_args.save_dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def lm_model_dir(lm_run: Path) -> Path:
    return lm_run / "model"
