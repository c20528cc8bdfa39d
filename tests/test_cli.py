"""The `bilstm` command, run for real in subprocesses."""

import json

import pytest

from tests.conftest import ROOT, SAMPLES, run_bilstm


def test_fit_writes_model_dir_and_records_metrics(textcat_model_dir):
    meta = json.loads((textcat_model_dir / "meta.json").read_text())
    assert meta["task"] == "classify" and meta["labels"] == ["neg", "pos"]
    assert meta["training"]["metrics"]["val_acc"] > 0.7  # the bundled sample is learnable
    assert meta["training"]["data"]["train_examples"] == 400


def test_evaluate_prints_one_json_object(textcat_model_dir):
    result = run_bilstm("evaluate", str(textcat_model_dir), str(SAMPLES / "textcat/dev.jsonl"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 100 and 0.7 < metrics["accuracy"] <= 1 and 0.7 < metrics["macro_f1"] <= 1
    meta = json.loads((textcat_model_dir / "meta.json").read_text())
    assert metrics["accuracy"] == pytest.approx(meta["training"]["metrics"]["val_acc"], abs=1e-4)
    csv = run_bilstm("evaluate", str(textcat_model_dir), str(SAMPLES / "textcat/dev.csv"),
                     "--text-field", "review", "--label-field", "sentiment")
    assert json.loads(csv.stdout)["accuracy"] == metrics["accuracy"]


def test_label_writes_jsonl_in_input_order(textcat_model_dir, tmp_path):
    output = tmp_path / "labels.jsonl"
    result = run_bilstm("label", str(textcat_model_dir), str(SAMPLES / "textcat/unlabelled.txt"), str(output))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    texts = [line for line in (SAMPLES / "textcat/unlabelled.txt").read_text().splitlines() if line.strip()]
    assert [row["text"] for row in rows] == texts
    assert all(row["label"] in ("neg", "pos") for row in rows)


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda tmp, model: ["evaluate", str(tmp / "missing"), "x.jsonl"], "model directory not found"),
    (lambda tmp, model: ["evaluate", str(model), str(tmp / "nope.jsonl")], "nope.jsonl: file not found"),
    (lambda tmp, model: ["evaluate", str(model), str(SAMPLES / "textcat/dev.csv")], "missing text field 'text'"),
    (lambda tmp, model: ["evaluate", str(model), str(SAMPLES / "textcat/dev.jsonl"), "--batch-size", "0"],
     "--batch-size: 0 must be at least 1"),
    (lambda tmp, model: ["label", str(model), str(SAMPLES / "textcat/unlabelled.txt"), str(tmp / "o.jsonl"),
                         "--device", "gpu"], "unknown device 'gpu'"),
    (lambda tmp, model: ["label", str(model), str(SAMPLES / "textcat/unlabelled.txt"), str(tmp / "o.jsonl"),
                         "--window", "0"], "--window: 0 must be at least 1"),
    (lambda tmp, model: ["fit", "--config", "configs/textcat_sample.yaml", "--trainer.default_root_dir", str(tmp),
                         "--weights_only", "false"], "--weights_only false is refused"),
])
def test_errors_are_one_clear_line_and_status_2(textcat_model_dir, tmp_path, make_args, message):
    result = run_bilstm(*make_args(tmp_path, textcat_model_dir))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unknown_label_in_evaluation_file(textcat_model_dir, tmp_path):
    data = tmp_path / "odd.jsonl"
    data.write_text('{"text": "fine", "label": "pos"}\n{"text": "meh", "label": "neutral"}\n')
    result = run_bilstm("evaluate", str(textcat_model_dir), str(data))
    assert result.returncode == 2 and "odd.jsonl:2: unknown label 'neutral'" in result.stderr


def test_fit_again_into_the_same_place_and_resume(textcat_run):
    """A second run into the same root does not crash; --ckpt_path resumes from the last checkpoint."""
    last = sorted(textcat_run.glob("lightning_logs/version_*/checkpoints/last.ckpt"))[-1]
    result = run_bilstm("fit", "--config", "configs/textcat_sample.yaml", "--trainer.default_root_dir",
                        str(textcat_run), "--trainer.max_epochs", "5", "--ckpt_path", str(last),
                        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Restored all states from the checkpoint" in result.stdout + result.stderr
    meta = json.loads((textcat_run / "model/meta.json").read_text())
    assert meta["training"]["epochs"] == 5  # continued from epoch 4, not restarted
    assert len(list(textcat_run.glob("lightning_logs/version_*"))) == 2
    # the end of a fit names the command that draws its learning curves (`bilstm report run`)
    assert f"learning curves: bilstm report run {textcat_run / 'lightning_logs' / 'version_1'}" in result.stdout


def test_config_overrides_reach_the_model(tmp_path):
    result = run_bilstm("fit", "--config", "configs/textcat_sample.yaml", "--trainer.default_root_dir", str(tmp_path),
                        "--trainer.max_epochs", "1", "--model.init_args.network.encoder.cell", "gru",
                        "--model.init_args.network.encoder.hidden_size", "8", "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu", "--export_dir", str(tmp_path / "exported"))
    assert result.returncode == 0, result.stderr[-3000:]
    encoder = json.loads((tmp_path / "exported/meta.json").read_text())["model_config"]["network"]["encoder"]
    assert (encoder["cell"], encoder["hidden_size"]) == ("gru", 8)


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path):
    result = run_bilstm("fit", "--config", "configs/textcat_sample.yaml", "--trainer.default_root_dir", str(tmp_path),
                        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
                        "--trainer.devices", "2", "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in output
    # 400 examples / batch 16 / 2 processes = 13 steps per epoch, 26 in all.
    assert json.loads((tmp_path / "model/meta.json").read_text())["training"]["global_step"] == 26


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_parses(config, capsys, monkeypatch):
    # In-process (LightningCLI's parser, exactly as `bilstm fit` runs it): a subprocess per config cost ~10 s of
    # imports each; the real command line is exercised by the first test below and by every fit test.
    from toolkit.training import run

    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exited:
        run(["fit", "--config", f"configs/{config}", "--print_config"])
    assert exited.value.code in (0, None)
    assert "class_path: toolkit." in capsys.readouterr().out


def test_print_config_through_the_real_command():
    result = run_bilstm("fit", "--config", "configs/textcat_sample.yaml", "--print_config")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "class_path: toolkit." in result.stdout


def test_help_lists_the_commands():
    result = run_bilstm("--help")
    assert result.returncode == 0
    for command in ("fit", "evaluate", "label"):
        assert command in result.stdout


def test_fit_initialises_embeddings_from_pretrained_vectors(tmp_path):
    """The task's setup loads word2vec/GloVe text vectors into the vocabulary's rows (frozen: kept exactly)."""
    vectors = {"film": [0.25] * 64, "movie": [-0.5] * 64}
    path = tmp_path / "vectors.txt"
    path.write_text("".join(f"{word} {' '.join(map(str, values))}\n" for word, values in vectors.items()))
    result = run_bilstm("fit", "--config", "configs/textcat_sample.yaml", "--trainer.max_epochs", "1",
                        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                        "--model.init_args.network.pretrained", str(path),
                        "--model.init_args.network.freeze_embeddings", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2/" in result.stdout and "tokens found" in result.stdout
    from toolkit import Predictor

    predictor = Predictor.load(tmp_path / "model", device="cpu")
    weights = predictor.net.embed.embedding.weight
    for word, values in vectors.items():
        assert weights[predictor.vocab.encode([word])[0]].tolist() == values
