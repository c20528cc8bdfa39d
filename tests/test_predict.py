import re

import pytest
import torch

from toolkit import Predictor
from toolkit.errors import InputError
from toolkit.predict.classify import ClassifyPredictor, ClassPrediction

TEXTS = ["An absolute joy from start to finish, I loved it.", "Dull, predictable and far too long.",
         "The worst meal I have had in years.", "Brilliant!", "It was fine<br />nothing special."]


@pytest.fixture(scope="module")
def predictor(textcat_model_dir):
    return Predictor.load(textcat_model_dir, device="cpu")


def test_load_returns_the_task_predictor(predictor):
    assert isinstance(predictor, ClassifyPredictor) and predictor.labels == ["neg", "pos"]


def test_predictions_are_typed_ordered_and_normalised(predictor):
    results = predictor.predict(TEXTS)
    assert len(results) == len(TEXTS) and all(isinstance(r, ClassPrediction) for r in results)
    for result in results:
        assert abs(sum(result.probabilities.values()) - 1) < 1e-5
        assert result.score == result.probabilities[result.label] == max(result.probabilities.values())
    assert results[0].label == "pos" and results[1].label == "neg"


def test_batch_size_and_batch_company_do_not_change_results(predictor):
    together = predictor.predict_proba(TEXTS, batch_size=64)
    one_by_one = torch.cat([predictor.predict_proba([text]) for text in TEXTS])
    in_pairs = predictor.predict_proba(TEXTS, batch_size=2)
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(together, in_pairs, atol=1e-5, rtol=1e-4)


def test_bad_inputs_raise_clear_errors(predictor):
    with pytest.raises(InputError, match="not a single string"):
        predictor.predict("just one text")
    with pytest.raises(InputError, match="text 1 '   ' is empty or blank"):
        predictor.predict(["fine", "   "])
    with pytest.raises(InputError, match=re.escape(r"text 1 '\x00\x07 ' is empty or blank")):
        predictor.predict(["fine", "\x00\x07 "])
    with pytest.raises(InputError, match="text 0 is a int"):
        predictor.predict([3])
    with pytest.raises(InputError, match=re.escape(r"text 1 'x \ud800 y' contains an unpaired UTF-16 surrogate "
                                                   "U+D800 at character 2")):
        predictor.predict(["fine", "x \ud800 y"])


def test_predictor_does_not_import_lightning(textcat_model_dir):
    import subprocess
    import sys

    code = ("import sys; from toolkit import Predictor; p = Predictor.load(sys.argv[1], device='cpu'); "
            "p.predict(['great']); bad = [m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code, str(textcat_model_dir)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
