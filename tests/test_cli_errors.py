"""`bilstm fit` / `bilstm export` mistakes and write failures: one `bilstm: error:` line, status 2, no traceback.

Argument mistakes fail before any data is read or anything is trained. The write failures are real: a tiny
tmpfs mounted for the test (skipped, with the reason, where mounting is not permitted).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_bilstm

SAMPLE = ("fit", "--config", "configs/textcat_sample.yaml")
QUICK = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu")


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command failed with status 2 and exactly one ``bilstm: error:`` line, no traceback; that line."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("bilstm: error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "usage:" not in result.stderr  # not jsonargparse's ~60 lines of usage
    return errors[0]


@contextlib.contextmanager
def tiny_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "256k") mounted at ``where``: a disk that fills up for real."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up for real: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where: Path) -> None:
    result = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {result.stderr.strip()}")


def directory_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


# ---- argument mistakes (each one real command) -------------------------------------------------------------


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--trainer.profiler", "nonsense", ["--trainer.profiler: unknown profiler 'nonsense'", "simple", "advanced"]),
    ("--trainer.strategy", "ddpp", ["--trainer.strategy: unknown strategy 'ddpp' (did you mean 'ddp'?)",
                                    "auto", "ddp_spawn", "fsdp"]),
    ("--trainer.accelerator", "cpuu", ["--trainer.accelerator: unknown accelerator 'cpuu' (did you mean 'cpu'?)",
                                       "auto", "gpu", "cuda"]),
    ("--trainer.precision", "nonsense", ["--trainer.precision: invalid value 'nonsense'; choose one of",
                                         "16-mixed", "bf16-mixed", "32-true"]),
    ("--trainer.max_epochz", "3", ["unknown option --trainer.max_epochz; did you mean --trainer.max_epochs?"]),
    ("--model.init_args.network.encoder.hiden_size", "8",
     ["unknown option --model.init_args.network.encoder.hiden_size; "
      "did you mean --model.init_args.network.encoder.hidden_size?"]),
    ("--model.init_args.netwrok.embedding_dim", "8",
     ["unknown option --model.init_args.netwrok.embedding_dim; did you mean --model.init_args.network.embedding_dim?"]),
])
def test_a_bad_option_is_one_line_naming_it(tmp_path, option, value, expected):
    result = run_bilstm(*SAMPLE, "--trainer.default_root_dir", str(tmp_path), option, value)
    line = one_error_line(result)
    for part in expected:
        assert part in line, line
    assert not (tmp_path / "lightning_logs").exists()  # nothing was trained


def test_a_typo_inside_the_config_file_names_the_file_and_the_key_meant(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text((ROOT / "configs/textcat_sample.yaml").read_text().replace("    max_vocab:", "    max_vocb:"))
    line = one_error_line(run_bilstm("fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)))
    assert line == (f"bilstm: error: unknown key data.init_args.max_vocb in {config}; "
                    "did you mean data.init_args.max_vocab?")


CASES = {  # extra arguments → what the one line says (run in one process: the imports cost ~10 s a command)
    ("--trainer.max_epochs", "abc"): "--trainer.max_epochs: invalid value 'abc' (expected int)",
    ("--data.init_args.batch_size", "x"): "--data.init_args.batch_size: invalid value 'x' (expected int)",
    ("--model.class_path", "toolkit.tasks.Nope"): "--model.class_path: invalid value 'toolkit.tasks.Nope'",
    ("--trainer.max", "3"): "ambiguous option: --trainer.max could match --trainer.max_epochs",
    # an abbreviation argparse takes is not called unknown: the real mistake is named
    ("--trainer.max_epoch", "3", "--trainer.precision", "17"): "--trainer.precision: invalid value '17'",
    ("--model.init_args.network.encoder.cell", "lsmt"): "invalid setting: encoder.cell must be one of",
    ("--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.init_args.save_dri", "x"):
        "unknown option --trainer.logger.init_args.save_dri; did you mean --trainer.logger.init_args.save_dir?",
}


def test_more_mistakes_in_one_process(tmp_path, monkeypatch):
    from toolkit.cli import main

    config = tmp_path / "typos.yaml"
    sample = (ROOT / "configs/textcat_sample.yaml").read_text()
    config.write_text(sample.replace("  max_epochs: 8", "  max_epoch: 8").replace("    network:", "    netwrok:"))
    bad_value = tmp_path / "bad_value.yaml"
    bad_value.write_text(sample.replace("    batch_size: 16", "    batch_size: many"))
    cases = {("--trainer.default_root_dir", str(tmp_path), *extra): expected for extra, expected in CASES.items()}
    cases[("--config", str(config))] = (f"unknown key trainer.max_epoch in {config}; did you mean trainer.max_epochs?"
                                        " (9 more unknown: model.init_args.netwrok.embedding_dim,")
    cases[("--config", str(bad_value), "--data.init_args.batch_size", "4")] = (
        f"data.init_args.batch_size (in {bad_value}): invalid value 'many' (expected int)")
    monkeypatch.chdir(ROOT)
    for extra, expected in cases.items():
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main([*SAMPLE, *extra])
        lines = [line for line in stderr.getvalue().splitlines() if line.startswith("bilstm: error: ")]
        assert code == 2 and len(lines) == 1, (extra, stderr.getvalue()[-2000:])
        assert expected in lines[0], (extra, lines[0])
    assert not (tmp_path / "lightning_logs").exists()


def test_no_key_of_a_shipped_config_is_called_unknown(monkeypatch):
    """Every config in configs/ with one bad value: the line names that value, never a key of the config."""
    from toolkit.cli import main

    monkeypatch.chdir(ROOT)
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(["fit", "--config", f"configs/{config.name}", "--trainer.max_epochs", "abc"])
        lines = [line for line in stderr.getvalue().splitlines() if line.startswith("bilstm: error: ")]
        assert code == 2 and lines == ["bilstm: error: --trainer.max_epochs: invalid value 'abc' (expected int)"], \
            (config.name, stderr.getvalue()[-2000:])


def test_nearest_key():
    from toolkit.config import nearest_key

    known = ["trainer.max_epochs", "trainer.max_steps", "trainer.accelerator", "model.init_args.network.dropout"]
    assert nearest_key("trainer.max_epochz", known) == "trainer.max_epochs"
    assert nearest_key("trainr.accelerator", known) == "trainer.accelerator"  # a typo in the parent
    assert nearest_key("model.init_args.netwrok.dropout", known) == "model.init_args.network.dropout"
    assert nearest_key("trainer.colour", known) is None  # a shared prefix alone is not close


# ---- a disk that fills up, a folder that is read-only --------------------------------------------------------


def test_fit_into_a_full_disk_leaves_no_model_directory(tmp_path):
    with tiny_disk(tmp_path / "disk", "256k") as disk:  # the weights alone are ~570 kB
        result = run_bilstm(*SAMPLE, *QUICK, "--trainer.default_root_dir", str(tmp_path / "run"),
                            "--export_dir", str(disk / "model"))
        line = one_error_line(result)
        assert f"cannot write the model directory {disk / 'model'}: No space left on device" in line
        assert "free some disk space" in line and "--export_dir" in line
        best = next((tmp_path / "run").glob("lightning_logs/version_0/checkpoints/best-*.ckpt"))
        assert f"the trained weights are kept in the checkpoint {best}" in line
        assert list(disk.iterdir()) == []  # no model directory, complete or not, and no staging copy


def test_fit_whose_run_directory_fills_up_removes_the_cut_short_checkpoint(tmp_path):
    with tiny_disk(tmp_path / "disk", "256k") as disk:  # a checkpoint (weights + optimizer) is ~1.7 MB
        result = run_bilstm(*SAMPLE, *QUICK, "--trainer.default_root_dir", str(disk / "run"))
        line = one_error_line(result)
        assert f"cannot write the run's files in {disk / 'run'}: No space left on device" in line
        assert "--trainer.default_root_dir" in line
        checkpoints = list(disk.rglob("*.ckpt"))
        assert all(zipfile.is_zipfile(checkpoint) for checkpoint in checkpoints)  # none that a resume would trip on
        assert not (disk / "run" / "model").exists()


def test_export_onto_a_full_disk_leaves_the_model_directory_as_it_was(textcat_model_dir, tmp_path):
    room = directory_size(textcat_model_dir) + 64 * 1024  # the model fits, a second copy of it does not
    with tiny_disk(tmp_path / "disk", f"{room // 4096 * 4096 + 4096}") as disk:
        target = disk / "model"
        shutil.copytree(textcat_model_dir, target)
        before = {item.name: item.read_bytes() for item in target.iterdir()}
        line = one_error_line(run_bilstm("export", str(target), "--onnx"))
        assert f"cannot write model.onnx into the model directory {target}: No space left on device" in line
        assert "the directory is unchanged" in line
        assert {item.name: item.read_bytes() for item in target.iterdir()} == before  # no model.onnx beside it
        assert sorted(item.name for item in disk.iterdir()) == ["model"]  # no staging copy left


def test_export_with_a_full_temporary_folder(textcat_model_dir, tmp_path, monkeypatch):
    target = tmp_path / "model"
    shutil.copytree(textcat_model_dir, target)
    with tiny_disk(tmp_path / "tmp", "64k") as scratch:
        monkeypatch.setenv("TMPDIR", str(scratch))
        line = one_error_line(run_bilstm("export", str(target), "--onnx"))
        assert f"cannot write the ONNX export in the temporary folder {scratch}: No space left on device" in line
        assert "TMPDIR" in line
        assert not list(scratch.rglob("*.onnx"))
    assert sorted(item.name for item in target.iterdir()) == ["meta.json", "model.safetensors", "vocab.json"]
    assert not json.loads((target / "meta.json").read_text()).get("backends")


def test_export_into_a_read_only_folder(textcat_model_dir, tmp_path):
    with tiny_disk(tmp_path / "disk", "8m") as disk:
        shutil.copytree(textcat_model_dir, disk / "model")
        remount_read_only(disk)
        line = one_error_line(run_bilstm("export", str(disk / "model"), "--onnx"))
        assert f"cannot write model.onnx into the model directory {disk / 'model'}: Read-only file system" in line
        assert "make it writable" in line
