"""`bilstm report`: HTML model reports for every task (headline = `bilstm evaluate`), run reports, bad input."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from toolkit.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMING = ("seconds", "sentences_per_second")  # translation evaluate's wall time: differs between any two runs


def bilstm(*args: object) -> int:
    return main([str(arg) for arg in args])


def check_report(out: Path) -> dict:
    """index.html links only PNG files that exist next to it, is self-contained, and report.json parses."""
    import matplotlib.image

    page = (out / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources
    for source in sources:
        assert "/" not in source and (out / source).read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.image.imread(out / source).ndim == 3
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page and "<link" not in page
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert sorted(report.get("figures", sources)) == sorted(sources)
    return report


def evaluate_output(model_dir: Path, data_file: Path) -> dict:
    """What `bilstm evaluate MODEL_DIR DATA_FILE` prints."""
    from toolkit.evaluate import evaluate

    return json.loads(json.dumps(evaluate(model_dir, data_file)))


def test_classification_report_matches_evaluate(textcat_model_dir, tmp_path, capsys):
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    from toolkit import Predictor

    data, out = SAMPLES / "textcat/dev.jsonl", tmp_path / "report"
    assert bilstm("report", "model", textcat_model_dir, data, "--out", out, "--max-examples", "5") == 0
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out
    report = check_report(out)
    assert {"confusion_matrix.png", "per_class.png", "reliability.png"} <= set(report["figures"])
    assert report["metrics"] == evaluate_output(textcat_model_dir, data)
    part = report["classify"]
    matrix = part["confusion_matrix"]
    assert sum(matrix[i][i] for i in range(len(matrix))) / sum(map(sum, matrix)) == pytest.approx(
        report["metrics"]["accuracy"], abs=1e-6)
    assert len(part["mistakes"]) == min(5, part["mistakes_total"])
    probabilities = Predictor.load(textcat_model_dir).predict_proba(
        [json.loads(line)["text"] for line in data.read_text().splitlines()])
    labels = report["meta"]["labels"]
    gold = torch.tensor([labels.index(json.loads(line)["label"]) for line in data.read_text().splitlines()])
    assert part["calibration"]["ece"] == pytest.approx(
        float(multiclass_calibration_error(probabilities, gold, len(labels), n_bins=10)), abs=1e-5)
    assert report["meta"]["provenance"]["seed"] == 42
    page = (out / "index.html").read_text()
    assert "Reproducibility record" in page and "git.commit" in page


def test_tagging_report_matches_evaluate(ner_model_dir, tmp_path):
    data, out = SAMPLES / "ner/dev.conll", tmp_path / "report"
    assert bilstm("report", "model", ner_model_dir, data, "--out", out, "--max-examples", "3") == 0
    report = check_report(out)
    assert report["metrics"] == evaluate_output(ner_model_dir, data)
    confusion = report["tag"]["type_confusion"]
    for kind, scores in report["metrics"]["per_type"].items():
        row = confusion["rows"][kind]
        assert sum(row.values()) == scores["support"]  # every gold entity counted once
        assert confusion["exact"][kind] == pytest.approx(scores["recall"] * scores["support"], abs=1e-3)
    assert len(report["tag"]["errors"]) == min(3, report["tag"]["error_sentences"])
    if report["tag"]["errors"]:
        assert 'class="entities"' in (out / "index.html").read_text()  # displaCy's markup


def test_translation_report_matches_evaluate(translate_model_dir, tmp_path):
    data, out = SAMPLES / "translate/dev.jsonl", tmp_path / "report"
    assert bilstm("report", "model", translate_model_dir, data, "--out", out, "--max-examples", "2") == 0
    report = check_report(out)
    expected = evaluate_output(translate_model_dir, data)
    assert {k: v for k, v in report["metrics"].items() if k not in TIMING} == {
        k: v for k, v in expected.items() if k not in TIMING}
    part = report["translate"]
    assert sum(bucket["sentences"] for bucket in part["bleu_by_length"]) == expected["n"]
    assert [sample["attention_figure"] for sample in part["samples"]] == ["attention_01.png", "attention_02.png"]
    sample = part["samples"][0]
    assert len(sample["attention"][0]) == len(sample["source_tokens"])


def test_language_model_report_matches_evaluate(lm_model_dir, tmp_path):
    data, out = SAMPLES / "lm/dev.txt", tmp_path / "report"
    assert bilstm("report", "model", lm_model_dir, data, "--out", out, "--batch-size", "4") == 0
    report = check_report(out)
    from toolkit.evaluate import evaluate

    assert report["metrics"] == json.loads(json.dumps(evaluate(lm_model_dir, data, batch_size=4)))
    part = report["lm"]
    assert {"perplexity_by_position.png", "perplexity_by_length.png"} <= set(report["figures"])
    assert sum(row["tokens"] for row in part["by_position"]) == part["per_text"]["tokens"]
    assert sum(row["texts"] for row in part["by_length"]) == part["texts"] == report["metrics"]["lines"]


def test_run_report_draws_learning_rate_and_validation_curves(textcat_run, tmp_path, capsys):
    out = tmp_path / "curves"
    assert bilstm("report", "run", textcat_run, "--out", out) == 0
    report = check_report(out)
    latest = max(textcat_run.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    assert Path(report["log_dir"]) == latest
    assert {"loss.png", "dev_metrics.png", "learning_rate.png", "per_epoch.png"} <= set(report["figures"])
    columns = report["columns"]
    assert any(name.startswith("lr-") and record["kind"] == "lr" for name, record in columns.items())
    assert columns["val_acc"]["kind"] == "epoch" and columns["val_acc"]["best"]["mode"] == "max"
    assert columns["val_loss"]["best"]["mode"] == "min"
    assert report["final_validation"]  # bilstm fit's validation of the best checkpoint, reported apart
    page = (out / "index.html").read_text()
    assert "seed_everything" in page and "<pre>" in page  # config.yaml, escaped
    capsys.readouterr()
    # a version folder directly
    assert bilstm("report", "run", latest, "--out", tmp_path / "again") == 0
    assert json.loads((tmp_path / "again/report.json").read_text())["columns"] == columns


def write_metrics(folder: Path, text: str) -> Path:
    log_dir = folder / "lightning_logs" / "version_0"
    log_dir.mkdir(parents=True)
    (log_dir / "metrics.csv").write_text(text)
    return folder


def test_run_report_handles_sparse_columns_and_nan(tmp_path):
    run = write_metrics(tmp_path / "run", "epoch,step,train_loss,val_acc,lr-SGD\n"
                        ",0,,,0.1\n0,4,nan,,\n0,4,,0.5,\n,5,,,0.05\n1,9,0.7,,\n1,9,,0.75,\n")
    assert bilstm("report", "run", run, "--out", tmp_path / "out") == 0
    report = check_report(tmp_path / "out")
    columns = report["columns"]
    assert columns["train_loss"]["non_finite"] == 1 and columns["train_loss"]["values"] == 1
    assert columns["val_acc"]["best"] == {"value": 0.75, "step": 9, "epoch": 1, "mode": "max"}
    assert columns["lr-SGD"]["kind"] == "lr" and columns["lr-SGD"]["final"]["value"] == 0.05
    assert "no config.yaml" in (tmp_path / "out/index.html").read_text()


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert error.startswith("bilstm: error: ") and error.count("\n") == 1 and "Traceback" not in error, error
    return error


@pytest.mark.parametrize(("csv_text", "message"), [
    ("", "is empty"),
    ("epoch,step,train_loss\n", "has no logged values"),
    ("epoch,train_loss\n0,1.0\n", "has no 'step' column"),
])
def test_run_report_refuses_unusable_logs(tmp_path, capsys, csv_text, message):
    run = write_metrics(tmp_path / "run", csv_text)
    assert bilstm("report", "run", run, "--out", tmp_path / "out") == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_run_report_without_a_log(tmp_path, capsys):
    assert bilstm("report", "run", tmp_path, "--out", tmp_path / "out") == 2
    assert "has no metrics.csv" in one_line_error(capsys)


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda tmp, model: [model, tmp / "missing.jsonl", "--out", tmp / "o"], "missing.jsonl: file not found"),
    (lambda tmp, model: [model, SAMPLES / "lm/dev.txt", "--out", tmp / "o"], "expected a .jsonl or .csv/.tsv"),
    (lambda tmp, model: [model, SAMPLES / "ner/dev.conll", "--out", tmp / "o"], "expected a .jsonl or .csv/.tsv"),
    (lambda tmp, model: [model, SAMPLES / "textcat/dev.jsonl", "--out", SAMPLES / "textcat/dev.jsonl"], "is a file"),
    (lambda tmp, model: [model, SAMPLES / "textcat/dev.jsonl", "--out", model], "write the report somewhere else"),
    (lambda tmp, model: [model, SAMPLES / "textcat/dev.jsonl", "--out", model / "report"], "is inside"),
    (lambda tmp, model: [tmp / "no_model", SAMPLES / "textcat/dev.jsonl", "--out", tmp / "o"],
     "model directory not found"),
])
def test_model_report_bad_input_is_one_line_and_status_2(textcat_model_dir, tmp_path, capsys, make_args, message):
    assert bilstm("report", "model", *make_args(tmp_path, textcat_model_dir)) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "o").exists() and not (textcat_model_dir / "report").exists()


def test_missing_matplotlib_is_one_line(tmp_path, capsys, monkeypatch):
    run = write_metrics(tmp_path / "run", "epoch,step,train_loss\n0,1,0.5\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    assert bilstm("report", "run", run, "--out", tmp_path / "out") == 2
    assert "pip install 'bilstm-toolkit[plot]'" in one_line_error(capsys)


INJECTION = "<script>alert(1)</script>"


def test_texts_are_escaped_in_the_mistakes_table(textcat_model_dir, tmp_path):
    data = tmp_path / "evil.jsonl"
    text = f"{INJECTION} a wonderful film"
    # The same text under both labels: one of the two is a mistake, whatever the model says.
    data.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for label in ("pos", "neg")))
    assert bilstm("report", "model", textcat_model_dir, data, "--out", tmp_path / "out") == 0
    page = (tmp_path / "out/index.html").read_text()
    assert INJECTION not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a wonderful film" in page
    assert json.loads((tmp_path / "out/report.json").read_text())["classify"]["mistakes"][0]["text"] == text


def test_tokens_are_escaped_in_the_entity_errors(ner_model_dir, tmp_path):
    data = tmp_path / "evil.conll"
    sentence = [INJECTION, "visited", "Bonn", "."]
    # The same tokens with and without gold entities: one of the two has errors, whatever the model says.
    data.write_text("\n".join(f"{token} {tag}" for token, tag in zip(sentence, ["I-PER", "O", "I-LOC", "O"],
                                                                     strict=True)) + "\n\n"
                    + "\n".join(f"{token} O" for token in sentence) + "\n")
    assert bilstm("report", "model", ner_model_dir, data, "--out", tmp_path / "out") == 0
    page = (tmp_path / "out/index.html").read_text()
    assert INJECTION not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_figures_draw_texts_that_look_like_math():
    from toolkit.report import figures

    png = figures.heatmap([[0.5, 0.5], [1.0, 0.0]], ["$5", "x^2$"], ["$", "</s>"], "costs $5 $$")
    assert png[:8] == PNG_MAGIC


def test_fit_prints_the_learning_curves_command(tmp_path):
    from types import SimpleNamespace

    from pytorch_lightning.loggers import CSVLogger

    from toolkit.training import learning_curves_command

    logger = CSVLogger(tmp_path / "my run")
    command = learning_curves_command(SimpleNamespace(loggers=[logger]), tmp_path / "my run" / "model")
    assert command == (f"bilstm report run '{tmp_path / 'my run' / 'lightning_logs' / 'version_0'}' "
                       f"--out '{tmp_path / 'my run' / 'model_curves'}'")
    assert learning_curves_command(SimpleNamespace(loggers=[]), tmp_path / "model") is None


def test_short_form_of_the_public_contract_is_a_model_report(textcat_model_dir, tmp_path):
    """DESIGN.md's contract: `bilstm report DIR DATA --out D` (no `model` word) makes the model report."""
    data, out = SAMPLES / "textcat/dev.jsonl", tmp_path / "short"
    assert bilstm("report", textcat_model_dir, data, "--out", out, "--max-examples", "3") == 0
    assert json.loads((out / "report.json").read_text())["metrics"] == evaluate_output(textcat_model_dir, data)


def test_a_text_over_the_limit_names_the_option_the_report_takes(textcat_model_dir, tmp_path, capsys):
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"text": "a fine film " * 300, "label": "pos"}) + "\n"
                    + json.dumps({"text": "dull", "label": "neg"}) + "\n")
    assert bilstm("report", "model", textcat_model_dir, data, "--out", tmp_path / "o", "--max-chars", "100") == 2
    assert "--max-chars" in one_line_error(capsys)
    assert bilstm("report", "model", textcat_model_dir, data, "--out", tmp_path / "o", "--max-chars", "5000") == 0
    matrix = json.loads((tmp_path / "o/report.json").read_text())["classify"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == 2  # both texts, the long one too
