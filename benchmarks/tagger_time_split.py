"""Where the ONNX int8 tagger spends its time: tag scores (ONNX Runtime) against CRF Viterbi (torch), per batch size.

    OMP_NUM_THREADS=1 python benchmarks/tagger_time_split.py

Same model as benchmarks/ner_speed.py (100-d words, 2×256 BiLSTM, CRF), its first 512 CoNLL-2003 sentences, exported
with ``bilstm export --onnx --int8``; ``tag_tokens(..., with_confidence=False)``. The rest of the time is featurising
and batching.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ner_speed import load_sentences, make_model_dir

from toolkit.onnx_export import export_onnx
from toolkit.predict import Predictor
from toolkit.predict.onnx_backend import OnnxTaggerNet


def main() -> None:
    rows = load_sentences(512)
    sentences = [row["tokens"] for row in rows]
    spent = {"scores": 0.0, "decode": 0.0}
    scores, decode = OnnxTaggerNet.__call__, OnnxTaggerNet.decode

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            result = function(*args, **kwargs)
            spent[name] += time.perf_counter() - started
            return result
        return wrapper

    OnnxTaggerNet.__call__, OnnxTaggerNet.decode = timed("scores", scores), timed("decode", decode)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = make_model_dir(rows, Path(scratch) / "model")
        export_onnx(model_dir, int8=True)
        predictor = Predictor.load(model_dir, backend="onnx", quantize=True)
        predictor.tag_tokens(sentences[:64], 32, with_confidence=False)  # warm-up
        for batch_size in (1, 32, 256):
            spent.update(scores=0.0, decode=0.0)
            started = time.perf_counter()
            predictor.tag_tokens(sentences if batch_size > 1 else sentences[:256], batch_size, with_confidence=False)
            total = time.perf_counter() - started
            print(f"batch {batch_size}: total {total:.2f} s, ONNX int8 scores {spent['scores'] / total:.0%}, "
                  f"Viterbi (torch) {spent['decode'] / total:.0%}")


if __name__ == "__main__":
    main()
