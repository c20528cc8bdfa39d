"""``nlp.pipe(texts, n_process=N)`` with the bilstm components: real spaCy worker processes, under fork and spawn.

Each check runs a script in its own process session with a timeout, so a hang (the libgomp deadlock a Predictor
loaded before the fork used to cause, see toolkit/spacy_base.py) fails the test and its worker processes are killed,
instead of stalling the suite. The script runs the model in the parent first, with two torch threads, which is what
set the trap: that first forward pass starts OpenMP's thread team in the parent.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import spacy

from tests.conftest import ROOT, exported_copy
from tests.test_spacy_component import GERMAN, NER_TEXTS, REVIEWS

TIMEOUT_S = 240
"""A run takes 10-40 s on 2 busy cores (a spawn worker imports torch and spaCy); a hang takes forever."""

TEXTS = [*NER_TEXTS, *REVIEWS, *GERMAN, "", "   "] * 2  # 30 docs, blank ones among them
BATCH_SIZE = 4  # nlp.pipe's batch size: 8 batches, dealt round-robin to the workers

SCRIPT = textwrap.dedent('''
    """Runs nlp.pipe with n_process=1 and then each N of the config; prints per-doc results as JSON."""
    import faulthandler, json, multiprocessing, os, sys, tempfile
    import spacy, torch
    from spacy.tokens import Doc
    from toolkit import spacy_component

    # Probe, in every process (a spawn worker re-imports this file): which process ran each component's predict,
    # with how many torch threads (predict runs on the thread that does the model's work) and which Predictor.
    Doc.set_extension("probe", default=None)

    def probed(predict):
        def predict_and_record(self, docs):
            docs = list(docs)
            predictions = predict(self, docs)
            where = [os.getpid(), torch.get_num_threads(), id(self.predictor)]
            for doc in docs:
                doc._.probe = {**(doc._.probe or {}), self.name: where}
            return predictions
        return predict_and_record

    for component in (spacy_component.ClassifyComponent, spacy_component.TagComponent,
                      spacy_component.TranslateComponent, spacy_component.LMComponent):
        component.predict = probed(component.predict)

    def summary(doc):
        return {"cats": doc.cats, "ents": [[e.label_, e.start_char, e.end_char] for e in doc.ents],
                "translation": doc._.get("translation") if doc.has_extension("translation") else None,
                "perplexity": doc._.get("perplexity") if doc.has_extension("perplexity") else None,
                "probe": doc._.probe}

    if __name__ == "__main__":
        config = json.loads(sys.argv[1])
        faulthandler.dump_traceback_later(config["timeout"], exit=True)  # the parent's stack if it hangs
        multiprocessing.set_start_method(config["start_method"])
        torch.set_num_threads(2)  # an OpenMP team in the parent, whatever the machine or OMP_NUM_THREADS
        nlp = spacy.blank("en")
        for factory, settings in config["components"]:
            nlp.add_pipe(factory, config=settings)
        if config["from_disk"]:
            saved = tempfile.mkdtemp(dir=config["tmp"])
            nlp.to_disk(saved)
            nlp = spacy.load(saved)
        runs = {}
        for n_process in [1, *config["n_process"]]:  # n_process=1 first: the parent runs the model before forking
            runs[n_process] = [summary(doc) for doc in nlp.pipe(config["texts"], n_process=n_process,
                                                                batch_size=config["batch_size"])]
        print(json.dumps({"parent": os.getpid(), "runs": runs}))
''')


def run_pipe_script(tmp_path: Path, start_method: str, components: list, *, from_disk: bool,
                    n_process: tuple[int, ...] = (2,)) -> dict:
    """Run :data:`SCRIPT` in a new process session; on a timeout kill the session (workers too) and fail."""
    script = tmp_path / "pipe_n_process.py"
    script.write_text(SCRIPT)
    config = {"start_method": start_method, "components": components, "from_disk": from_disk, "tmp": str(tmp_path),
              "n_process": list(n_process), "texts": TEXTS, "batch_size": BATCH_SIZE, "timeout": TIMEOUT_S - 20}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, str(script), json.dumps(config)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"nlp.pipe(n_process=...) under {start_method} hung for {TIMEOUT_S} s:\n{stderr[-4000:]}")
    assert process.returncode == 0, stderr[-4000:]
    return json.loads(stdout.strip().splitlines()[-1])


def assert_same_results(result: dict, thread_counts: dict[str, int]) -> None:
    """Every n_process run gives n_process=1's per-doc results, from worker processes with the expected threads."""
    runs, parent = dict(result["runs"]), result["parent"]
    serial = runs.pop("1")
    assert len(serial) == len(TEXTS)
    for n_process, docs in runs.items():
        assert len(docs) == len(serial), n_process
        for want, got in zip(serial, docs, strict=True):
            assert got["ents"] == want["ents"]
            assert got["translation"] == want["translation"]
            assert got["cats"] == pytest.approx(want["cats"], rel=1e-5, abs=1e-6)
            if want["perplexity"] is None:
                assert got["perplexity"] is None
            else:
                assert math.isclose(got["perplexity"], want["perplexity"], rel_tol=1e-5)
        for name, threads in thread_counts.items():
            where = probes(docs, name)
            pids = {pid for pid, _, _ in where}
            assert parent not in pids and len(pids) == int(n_process), (name, n_process, where)
            assert {count for _, count, _ in where} == {threads}, (name, n_process, where)


def probes(docs: list[dict], name: str) -> set[tuple[int, int, int]]:
    """``(pid, torch threads, id of the Predictor)`` of every predict call of component ``name``."""
    return {tuple(doc["probe"][name]) for doc in docs if doc["probe"] and name in doc["probe"]}


@pytest.fixture(scope="module")
def onnx_ner_model_dir(ner_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    return exported_copy(ner_model_dir, tmp_path_factory, "onnx_ner_mp")[0]


def test_fork_loaded_pipeline_matches_one_process_with_every_component(
        tmp_path, textcat_model_dir, onnx_ner_model_dir, translate_model_dir, lm_model_dir):
    # Linux's default start method, a pipeline from spacy.load, all four components (NER on ONNX Runtime), 2 and 3
    # workers. The classifier asks for 2 threads: its workers use 2 (safely: see ModelDirPipe._predict), the others 1.
    components = [
        ["bilstm_textcat", {"model": str(textcat_model_dir), "num_threads": 2}],
        ["bilstm_ner", {"model": str(onnx_ner_model_dir), "backend": "onnx"}],
        ["bilstm_translate", {"model": str(translate_model_dir), "beam_size": 2}],
        ["bilstm_lm", {"model": str(lm_model_dir)}],
    ]
    result = run_pipe_script(tmp_path, "fork", components, from_disk=True, n_process=(2, 3))
    assert_same_results(result, {"bilstm_textcat": 2, "bilstm_ner": 1, "bilstm_translate": 1, "bilstm_lm": 1})
    # A forked worker uses the parent's torch network as it is (no reload); an ONNX Runtime session is reloaded.
    for name in ("bilstm_textcat", "bilstm_ner", "bilstm_translate", "bilstm_lm"):
        (_, _, home), = probes(result["runs"]["1"], name)
        predictors = {predictor for _, _, predictor in probes(result["runs"]["2"], name)}
        if name == "bilstm_ner":
            assert predictors and home not in predictors
        else:
            assert predictors == {home}, name
    filled = [doc for doc in result["runs"]["2"] if doc["cats"]]
    assert len(filled) == 26 and all(doc["translation"] and doc["perplexity"] for doc in filled)
    assert any(doc["ents"] for doc in filled)  # the comparisons above compared something


def test_spawn_pipeline_built_in_code_matches_one_process(tmp_path, onnx_model_dir, ner_model_dir):
    # spawn pickles the components: a loaded ONNX Runtime session cannot be pickled, so the predictor stays behind.
    pytest.importorskip("onnxruntime")
    components = [["bilstm_textcat", {"model": str(onnx_model_dir), "backend": "onnx"}],
                  ["bilstm_ner", {"model": str(ner_model_dir)}]]
    result = run_pipe_script(tmp_path, "spawn", components, from_disk=False)
    assert_same_results(result, {"bilstm_textcat": 1, "bilstm_ner": 1})
    assert any(doc["ents"] for doc in result["runs"]["2"])


def test_spawn_loaded_pipeline_matches_one_process(tmp_path, textcat_model_dir, ner_model_dir):
    components = [["bilstm_textcat", {"model": str(textcat_model_dir)}],
                  ["bilstm_ner", {"model": str(ner_model_dir), "spans_key": "bilstm"}]]
    result = run_pipe_script(tmp_path, "spawn", components, from_disk=True)
    assert_same_results(result, {"bilstm_textcat": 1, "bilstm_ner": 1})


def test_a_pickled_component_leaves_its_loaded_predictor_behind(onnx_model_dir):
    pytest.importorskip("onnxruntime")
    nlp = spacy.blank("en")
    component = nlp.add_pipe("bilstm_textcat", config={"model": str(onnx_model_dir), "backend": "onnx"})
    expected = nlp(REVIEWS[0]).cats  # loads the predictor and its InferenceSession (which cannot be pickled)
    copy = pickle.loads(pickle.dumps(component))
    assert copy._process.predictor is None and copy._process.home_pid == os.getpid()
    assert copy.model_path == component.model_path and copy.backend == "onnx" and copy.name == component.name
    assert copy(nlp.make_doc(REVIEWS[0])).cats == pytest.approx(expected, abs=1e-6)
    assert copy._process.predictor is not None and copy._process.predictor is not component._process.predictor


def test_num_threads_is_checked(textcat_model_dir):
    nlp = spacy.blank("en")
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"num_threads must be >= 1 or None, got"):
            nlp.add_pipe("bilstm_textcat", name=f"textcat{bad}",
                         config={"model": str(textcat_model_dir), "num_threads": bad})
