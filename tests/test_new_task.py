"""A fifth task through one table entry (issue 24): trains, exports, predicts, serves, labels and runs in spaCy.

The task is ``tests/fixtures/bow_task/bowtask`` (a bag-of-embeddings classifier built from the toolkit's pieces).
It is installed the way a package would be — a folder on ``PYTHONPATH`` holding the package and a ``.dist-info``
whose entry points declare its task-table entry (``bilstm_toolkit.tasks``) and its spaCy factory — and used only
through the public commands, each in a fresh process. Nothing in the toolkit names it: if any adapter still
dispatched on the four built-in task names, one of these steps would fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.conftest import BILSTM, ROOT, SAMPLES
from tests.serving.conftest import start_server, stop_server

FIXTURE = ROOT / "tests" / "fixtures" / "bow_task" / "bowtask"
CONFIG = """\
seed_everything: 7
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 3
  enable_progress_bar: false
  log_every_n_steps: 5
model:
  class_path: toolkit.tasks.BowModule
  init_args:
    network:
      embedding_dim: 16
    optimizer:
      lr: 0.01
data:
  class_path: toolkit.data.BowData
  init_args:
    train_file: {train}
    dev_file: {dev}
    max_vocab: 2000
    batch_size: 16
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the task is installed: the package and its ``.dist-info`` with the two entry points."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(FIXTURE, root / "bowtask")
    info = root / "bowtask-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bowtask\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [bilstm_toolkit.tasks]
        bow = bowtask.task:ENTRY

        [spacy_factories]
        bilstm_bow = toolkit.spacy_component:make_bow
        """), encoding="utf-8")
    return root


def environment(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


def run(site: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), cwd=ROOT, env=environment(site), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def python(site: Path, code: str) -> str:
    return run(site, sys.executable, "-c", textwrap.dedent(code)).stdout


@pytest.fixture(scope="module")
def model_dir(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bilstm fit` of the new task, then `bilstm export --onnx --int8`."""
    work = tmp_path_factory.mktemp("bow_run")
    config = work / "bow.yaml"
    config.write_text(CONFIG.format(train=SAMPLES / "textcat" / "train.jsonl", dev=SAMPLES / "textcat" / "dev.jsonl"),
                      encoding="utf-8")
    fitted = run(site, *BILSTM, "fit", "--config", str(config), "--trainer.default_root_dir", str(work))
    assert f"model directory: {work / 'model'}" in fitted.stdout
    exported = json.loads(run(site, *BILSTM, "export", str(work / "model"), "--onnx", "--int8").stdout)
    assert exported["backends"]["onnx"]["max_abs_output_diff"] < 1e-4
    return work / "model"


TEXTS = ["A moving, beautifully shot film.", "A dull waste of two hours.", "Fine."]


def predictions(site: Path, model_dir: Path, backend: str = "torch") -> list[dict]:
    return json.loads(python(site, f"""
        import json
        from toolkit import Predictor
        predictor = Predictor.load({str(model_dir)!r}, device="cpu", backend={backend!r})
        assert type(predictor).__name__ == "BowPredictor" and type(predictor.net).__name__ in ("BowNet", "OnnxNet")
        print(json.dumps([r.to_dict() for r in predictor.predict({TEXTS!r})]))
        """))


def test_the_new_task_trains_exports_and_predicts(site, model_dir):
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["task"] == "bow" and meta["model_config"]["network"] == {"embedding_dim": 16, "dropout": 0.0}
    torch_results = predictions(site, model_dir)
    assert [set(r) for r in torch_results] == [{"label", "score", "probabilities"}] * 3
    onnx_results = predictions(site, model_dir, "onnx")
    assert [r["label"] for r in onnx_results] == [r["label"] for r in torch_results]
    for mine, theirs in zip(onnx_results, torch_results, strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-4)
    scores = json.loads(run(site, *BILSTM, "evaluate", str(model_dir), str(SAMPLES / "textcat" / "dev.jsonl")).stdout)
    assert {"accuracy", "macro_f1"} <= set(scores)


def test_the_new_task_labels_a_file(site, model_dir, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    run(site, *BILSTM, "label", str(model_dir), str(source), str(tmp_path / "labels.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [row["label"] for row in rows] == [r["label"] for r in predictions(site, model_dir)]


def test_the_new_task_runs_in_spacy_and_a_saved_pipeline_loads_in_a_fresh_process(site, model_dir, tmp_path):
    saved = tmp_path / "pipeline"
    python(site, f"""
        import spacy
        nlp = spacy.blank("en")
        nlp.add_pipe("bilstm_bow", config={{"model": {str(model_dir)!r}}})
        assert nlp({TEXTS[0]!r}).cats
        nlp.to_disk({str(saved)!r})
        """)
    cats = json.loads(python(site, f"""
        import json, spacy
        nlp = spacy.load({str(saved)!r})  # no import of the toolkit or of bowtask: the entry points find them
        print(json.dumps([doc.cats for doc in nlp.pipe({TEXTS!r})]))
        """))
    want = predictions(site, model_dir)
    assert [max(c, key=c.get) for c in cats] == [r["label"] for r in want]


def test_the_new_task_is_served_over_http(site, model_dir, tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "BENTOML_HOME": str(tmp_path / "bentoml")}
    server = start_server([*BILSTM, "serve", str(model_dir), "--port", "{port}"], env, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.post("/bow", json={"texts": TEXTS})
            assert answer.status_code == 200, answer.text
            assert [r["label"] for r in answer.json()] == [r["label"] for r in predictions(site, model_dir)]
            assert client.post("/bow", json={"texts": [""]}).status_code == 422
            listing = client.get("/models").json()["models"]
            assert [(m["task"], m["route"]) for m in listing] == [("bow", "/bow")]
            assert "/bow" in client.get("/docs.json").json()["paths"]
    finally:
        stop_server(server)
