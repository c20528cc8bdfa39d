"""Resuming `bilstm label` with settings that change the output bytes is refused, naming what changed.

Found by a user: a job run with `--backend onnx`, killed, then rerun without `--backend`, resumed on torch and
wrote a file that was neither run's. Every setting that changes the bytes (backend, quantisation, the model's
files, device type, max_chars…) is in the job's fingerprint; a changed one stops the job with one line (status 2
from the CLI) and leaves the partial output as it was, and the same settings resume to the uninterrupted bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.checkpoint import ResumeError
from pipelines.job import LabelJob, fingerprint
from pipelines.label import label_file
from pipelines.sources import InputReader
from tests.conftest import run_bilstm
from tests.pipelines.test_batch_label import Crash, crash_on_progress_write, sample_texts
from toolkit import Predictor
from toolkit.errors import ConfigError

WINDOW = 40


def partial_files(output: Path) -> dict[str, bytes]:
    """Everything an interrupted job left beside OUTPUT (what a refused resumption must not touch)."""
    return {path.name: path.read_bytes() for path in sorted(output.parent.iterdir())
            if path.name.startswith(output.name) and not path.name.endswith(".lock")}


def interrupted(model_dir: Path, source: Path, output: Path, monkeypatch: pytest.MonkeyPatch, **settings) -> dict:
    """A job that committed 3 windows and died in the 4th; returns its files."""
    crash_on_progress_write(monkeypatch, after=4)  # the start record + 3 windows commit
    with pytest.raises(Crash):
        label_file(model_dir, source, output, window=WINDOW, **settings)
    monkeypatch.undo()
    files = partial_files(output)
    assert json.loads(files[f"{output.name}.progress"])["records"] == 3 * WINDOW and not output.exists()
    return files


def cli_flags(settings: dict) -> list[str]:
    return [*(["--backend", settings["backend"]] if "backend" in settings else []),
            *(["--quantize"] if settings.get("quantize") else [])]


@pytest.mark.parametrize(("before", "after", "changed"), [
    ({"backend": "onnx"}, {}, "backend: 'onnx' → 'torch'"),                              # the user's report
    ({"quantize": True}, {}, "quantize: True → False"),                                  # int8 torch network
    ({"backend": "onnx"}, {"backend": "onnx", "quantize": True}, "quantize: False → True"),  # model.int8.onnx
])
def test_a_changed_backend_or_quantisation_is_refused_and_the_same_settings_resume(
        onnx_model_dir, tmp_path, monkeypatch, before, after, changed):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sample_texts(200)) + "\n")
    reference = tmp_path / "reference.jsonl"
    label_file(onnx_model_dir, source, reference, window=WINDOW, **before)
    output = tmp_path / "out.jsonl"
    files = interrupted(onnx_model_dir, source, output, monkeypatch, **before)

    with pytest.raises(ResumeError, match=rf"out\.jsonl\.progress: .*\({changed}\).*--restart"):
        label_file(onnx_model_dir, source, output, window=WINDOW, **after)
    assert partial_files(output) == files  # nothing of the partial output lost
    result = run_bilstm("label", str(onnx_model_dir), str(source), str(output), "--window", str(WINDOW),
                        *cli_flags(after))
    assert result.returncode == 2, result.stderr[-3000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("bilstm: error: ")]
    assert len(error_lines) == 1 and changed in error_lines[0] and "Traceback" not in result.stderr
    assert partial_files(output) == files

    resumed = label_file(onnx_model_dir, source, output, window=WINDOW, **before)
    assert resumed["resumed_at_line"] == 3 * WINDOW + 1 and resumed["records"] == 200
    assert output.read_bytes() == reference.read_bytes()


def test_the_model_hash_covers_its_side_files_and_the_fingerprint_every_setting(textcat_model_dir, tmp_path,
                                                                                 monkeypatch):
    """meta.json lists every file's sha256 (checked on load), so hashing it covers a changed vocabulary too."""
    model = tmp_path / "model"
    shutil.copytree(textcat_model_dir, model)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sample_texts(200)) + "\n")
    interrupted(model, source, tmp_path / "out.jsonl", monkeypatch)
    vocab = json.loads((model / "vocab.json").read_text())
    (model / "vocab.json").write_text(json.dumps(vocab, indent=1))  # the same words, other bytes
    meta = json.loads((model / "meta.json").read_text())
    data = (model / "vocab.json").read_bytes()
    meta["files"]["vocab.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (model / "meta.json").write_text(json.dumps(meta, indent=2))
    with pytest.raises(ResumeError, match=r"\(model_sha256: '[0-9a-f]{64}' → '[0-9a-f]{64}'\)"):
        label_file(model, source, tmp_path / "out.jsonl", window=WINDOW)

    predictor = Predictor.load(model, device="cpu")
    job = LabelJob.create(predictor, source, tmp_path / "x.jsonl", 8, backend="torch", quantize=False)
    fields = fingerprint(job, InputReader(source), processes=1)
    for key in ("model_sha256", "backend", "quantize", "device", "max_chars", "truncate", "batch_size", "window",
                "input_kind", "text_field", "conll_output", "max_line_bytes", "toolkit", "libraries"):
        assert key in fields, key
    assert fields["libraries"]["torch"] and fields["device"] == "cpu" and fields["quantize"] is False


def test_data_parallel_ranks_use_the_same_fingerprint(textcat_model_dir, tmp_path):
    """A rank's shard checkpoint holds the single-process fingerprint (plus its split) and refuses changes too."""
    from pipelines.distributed import LabelModule, shard_paths

    source = tmp_path / "in.txt"
    source.write_text("\n".join(sample_texts(20)) + "\n")
    output = tmp_path / "out.jsonl"
    reader = InputReader(source, window_size=WINDOW)
    job = LabelJob.create(Predictor.load(textcat_model_dir, device="cpu"), source, output, 64)

    def open_rank(job: LabelJob) -> LabelModule:
        module = LabelModule(job, reader, output, restart=False)
        module.trainer = SimpleNamespace(global_rank=1, world_size=2)  # what Trainer.predict gives rank 1 of 2
        module.predict_dataloader()
        return module

    open_rank(job).checkpoint.release()
    progress = json.loads(shard_paths(output, 1, 2)["progress"].read_text())
    assert progress["fingerprint"] == fingerprint(job, reader, processes=2, rank=1)
    assert progress["fingerprint"]["backend"] == "torch" and progress["fingerprint"]["quantize"] is False
    with pytest.raises(ResumeError, match=r"quantize: False → True"):
        open_rank(replace(job, quantize=True))
    with pytest.raises(ConfigError, match="--quantize labels in one process"):  # before the model is loaded
        label_file(tmp_path / "no-model", source, output, quantize=True, devices=2)
