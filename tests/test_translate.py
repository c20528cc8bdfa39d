"""Contract test for translation: `bilstm fit` on the bundled sample → model directory → Predictor →
`bilstm evaluate` (the real CLI in subprocesses, as a user runs it)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, SAMPLES, run_bilstm
from toolkit import Predictor
from toolkit.errors import DataError, InputError
from toolkit.predict.translate import TranslatePredictor, Translation

GERMAN = ["Ein Hund läuft über den Strand.", "Zwei Kinder spielen im Park.", "Eine Frau liest ein Buch."]


@pytest.fixture(scope="module")
def predictor(translate_model_dir: Path) -> TranslatePredictor:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Predictor.load(translate_model_dir, device="cpu")
    torch.set_num_threads(previous)


def test_model_directory_holds_weights_tokenizer_and_metrics(translate_model_dir):
    assert {p.name for p in translate_model_dir.iterdir()} == {"meta.json", "model.safetensors", "tokenizer.json"}
    meta = json.loads((translate_model_dir / "meta.json").read_text())
    assert meta["task"] == "translate"
    assert meta["tokenizer"]["files"] == {"source": "tokenizer.json", "target": "tokenizer.json"}
    assert meta["model_config"]["special_ids"] == {"pad": 0, "bos": 2, "eos": 3}
    assert {"val_bleu", "val_chrf", "val_ppl", "val_loss"} <= set(meta["training"]["metrics"])
    assert meta["training"]["data"]["train_pairs"] == 300


def test_predictor_translates_in_input_order(predictor):
    assert isinstance(predictor, TranslatePredictor)
    results = predictor.predict(GERMAN)
    assert len(results) == 3 and all(isinstance(r, Translation) for r in results)
    for text, result in zip(GERMAN, results, strict=True):
        assert result.source == text and result.translation.strip() and result.score <= 0
        assert set(result.to_dict()) == {"source", "translation", "score"}
    greedy = predictor.predict(GERMAN, beam_size=1)
    assert all(g.translation.strip() for g in greedy)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_outputs_cut_at_the_length_limit_say_so(predictor, beam_size):
    from dataclasses import replace

    default = predictor.decoding
    predictor.decoding = replace(default, max_length=2, max_length_ratio=0.0, max_length_offset=2)
    try:
        cut = predictor.predict(GERMAN, beam_size=beam_size)
    finally:
        predictor.decoding = default
    assert all(result.truncated and result.to_dict()["truncated"] is True for result in cut)
    assert all(len(result.translation.split()) <= 2 for result in cut)
    whole = predictor.predict(GERMAN, beam_size=beam_size)
    assert [r.truncated for r in whole] == ["truncated" in r.to_dict() for r in whole]


def test_batch_size_and_batch_company_do_not_change_translations(predictor):
    texts = [line for line in (SAMPLES / "translate/dev.de").read_text().splitlines()[:12]]
    for beam in (1, 5):
        together = [r.translation for r in predictor.predict(texts, batch_size=64, beam_size=beam)]
        alone = [r.translation for r in predictor.predict(texts, batch_size=1, beam_size=beam)]
        assert together == alone


def test_concurrent_requests_share_one_predictor(predictor):
    expected = [r.translation for r in predictor.predict(GERMAN, beam_size=3)]
    outputs: dict[int, list[str]] = {}

    def work(key: int) -> None:
        outputs[key] = [r.translation for r in predictor.predict(GERMAN, beam_size=3)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(value == expected for value in outputs.values()) and len(outputs) == 3


def test_attention_weights_on_request_and_heatmap_png(predictor, tmp_path):
    result = predictor.predict(GERMAN[:1], return_attention=True)[0]
    weights = torch.tensor(result.attention)
    assert weights.shape == (len(result.target_tokens), len(result.source_tokens))
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(weights)), atol=1e-3, rtol=0)
    assert result.source_tokens[0].startswith("▁") and {"attention", "source_tokens"} <= set(result.to_dict())
    assert predictor.predict(GERMAN[:1])[0].attention is None
    spec = importlib.util.spec_from_file_location("attention_heatmap", ROOT / "benchmarks/attention_heatmap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    png = module.plot_attention(result, tmp_path / "attention.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_raise_clear_errors(predictor):
    with pytest.raises(InputError, match="text 1 '  ' is empty or blank"):
        predictor.predict(["Ein Hund.", "  "])
    with pytest.raises(InputError, match=r"text 0 .* is 31 characters long, over the limit of 30"):
        predictor.max_chars = 30
        predictor.predict(["Ein Hund läuft über den Strand."])
    predictor.truncate = True
    cut = predictor.predict(["Ein Hund läuft über den Strand."])[0]
    predictor.max_chars, predictor.truncate = 20_000, False
    assert cut.input_truncated and cut.source == "Ein Hund läuft über den Strand."
    assert cut.to_dict()["input_truncated"] is True
    with pytest.raises(InputError, match="not a single string"):
        predictor.predict("Ein Hund.")
    with pytest.raises(InputError, match="beam_size"):
        predictor.predict(["Ein Hund."], beam_size=0)


def test_evaluate_finds_the_reference_beside_the_source_or_reads_jsonl(predictor, translate_model_dir):
    result = run_bilstm("evaluate", str(translate_model_dir), "samples/translate/dev.de", "--batch-size", "16")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout)
    assert {"bleu", "chrf", "n", "beam_size", "bleu_details", "sentences_per_second"} <= set(metrics)
    assert metrics["n"] == 60 and 0 <= metrics["bleu"] <= 100 and 0 < metrics["chrf"] <= 100
    assert "case:mixed" in metrics["bleu_details"] and metrics["beam_size"] == 5
    # The same pairs as JSONL score the same.
    jsonl = predictor.evaluate(SAMPLES / "translate/dev.jsonl", batch_size=16)
    assert (jsonl["bleu"], jsonl["chrf"], jsonl["n"]) == (metrics["bleu"], metrics["chrf"], 60)


def test_evaluate_errors_name_the_files(predictor, tmp_path):
    source = tmp_path / "val.de"
    source.write_text("Ein Hund.\nEine Katze.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"val\.en: file not found"):
        predictor.evaluate(source)
    (tmp_path / "val.en").write_text("A dog.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"val\.de: has 2 lines but its parallel file .*val\.en has 1 lines"):
        predictor.evaluate(source)
    with pytest.raises(DataError, match="cannot tell where the target side is"):
        predictor.evaluate(tmp_path / "val.txt")


def test_predictor_does_not_import_lightning(translate_model_dir):
    code = ("import sys; from toolkit import Predictor; p = Predictor.load(sys.argv[1], device='cpu'); "
            "p.predict(['Ein Hund.'], return_attention=True); "
            "bad = [m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code, str(translate_model_dir)], capture_output=True, text=True,
                            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": ""})
    assert result.returncode == 0, result.stdout + result.stderr
