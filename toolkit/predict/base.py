"""The Predictor: a model directory in, typed results out (no Lightning import).

``Predictor.load(dir)`` reads ``meta.json`` and returns the predictor for the model's task. Predictors
hold no per-request state, so one instance can serve concurrent requests.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from toolkit.artifact import ModelDir, load_model_dir
from toolkit.errors import ConfigError, InputError, ModelDirError

# task → "module:Class"; imported on demand so loading a classifier never imports the translator.
PREDICTORS = {
    "classify": "toolkit.predict.classify:ClassifierPredictor",
    "tag": "toolkit.predict.tag:TaggerPredictor",
    "translate": "toolkit.predict.translate:TranslatorPredictor",
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelDirError(f"device {device} requested but CUDA is not available; use device='cpu'")
    return device


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate a batch of input texts: a list of non-blank strings."""
    if isinstance(texts, str):
        raise InputError("predict() takes a list of texts, not a single string; wrap it: predict([text])")
    checked = list(texts)
    for position, text in enumerate(checked):
        if not isinstance(text, str):
            raise InputError(f"text {position} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise InputError(f"text {position} is empty or blank; nothing to predict")
    return checked


class Predictor:
    """Base class; use :meth:`Predictor.load` to get the right subclass for a model directory."""

    task: ClassVar[str] = ""

    def __init__(self, model_dir: ModelDir, device: torch.device) -> None:
        self.model_dir = model_dir
        self.meta: dict[str, Any] = model_dir.meta
        self.device = device

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             num_threads: int | None = None, quantize: bool = False) -> Predictor:
        """Load a model directory.

        Args:
            path: the model directory.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default CUDA when available.
            num_threads: torch intra-op threads for CPU inference (None leaves torch's setting).
            quantize: int8 dynamic quantization of the recurrent and linear layers (CPU only: with no
                ``device`` it loads on the CPU even where CUDA is available); check the
                accuracy cost on your data first (docs/benchmarks.md lists it for the shipped configs).

        Raises:
            ModelDirError: the directory is missing, incomplete, corrupt or from a newer toolkit.
        """
        if num_threads is not None:
            if not isinstance(num_threads, int) or num_threads < 1:
                raise ConfigError(f"num_threads must be a positive integer, not {num_threads!r}")
            torch.set_num_threads(num_threads)
        model_dir = load_model_dir(path)
        module_name, class_name = PREDICTORS[model_dir.task].split(":")
        predictor_class = getattr(importlib.import_module(module_name), class_name)
        if cls is not Predictor and not issubclass(predictor_class, cls):
            raise ModelDirError(f"{path} holds a {model_dir.task!r} model, not one for {cls.__name__}")
        if quantize and device is None:
            device = "cpu"  # int8 dynamic quantization is a CPU feature: quantize=True alone means the CPU
        predictor = predictor_class(model_dir, resolve_device(device))
        if quantize:
            predictor.quantize_dynamic()
        return predictor

    def quantize_dynamic(self) -> None:
        """Replace ``self.net``'s LSTM/GRU/Linear layers by int8 dynamically quantized ones (CPU)."""
        import warnings

        if self.device.type != "cpu":
            raise ModelDirError("int8 dynamic quantization runs on the CPU only; load with device='cpu'")
        with warnings.catch_warnings():  # torch.ao eager quantization is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            self.net = torch.ao.quantization.quantize_dynamic(
                self.net, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)

    @property
    def labels(self) -> list[str]:
        return list(self.meta.get("labels") or [])

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[Any]:
        """Predict for each text; results in input order. Each result has ``to_dict()`` (JSON-able)."""
        raise NotImplementedError

    def evaluate(self, data_file: str | Path, **options: Any) -> dict[str, Any]:
        """Score the model on a labelled file; one JSON-able dict (``bilstm evaluate``).

        ``options`` are the CLI's generic options (``text_field``, ``label_field``, ``batch_size``…);
        a task ignores those it has no use for.
        """
        raise NotImplementedError

    @staticmethod
    def load_weights(net: torch.nn.Module, model_dir: ModelDir) -> None:
        """Load the safetensors state dict strictly, naming mismatched tensors on failure."""
        state = model_dir.state_dict
        expected = net.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            details = "; ".join(part for part in (
                f"missing tensors {missing[:5]}" if missing else "",
                f"unexpected tensors {unexpected[:5]}" if unexpected else "",
                (f"wrong shapes {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in wrong[:5]]}"
                 if wrong else ""),
            ) if part)
            raise ModelDirError(f"{model_dir.path}: weights do not match the model config in meta.json ({details})")
        net.load_state_dict(state)
