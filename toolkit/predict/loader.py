"""``Predictor.load(dir)``: the predictor a model directory needs, from the task table.

The directory is read through its task's spec (``toolkit.specs``) and handed to the predictor class that the
task table (``toolkit.registry``) names. ``Predictor`` is an abstract base that every task predictor
(:class:`~toolkit.predict.base.TaskPredictor`) counts as, so ``isinstance(p, Predictor)`` holds; keeping the
dispatch out of the base class keeps the task predictors from importing each other in a circle.
"""

from __future__ import annotations

from abc import ABC
from pathlib import Path

import torch

from toolkit.artifact import load_model_dir
from toolkit.errors import ConfigError
from toolkit.predict.base import DEFAULT_MAX_CHARS, TaskPredictor, resolve_device
from toolkit.predict.onnx_backend import BACKENDS
from toolkit.registry import TASKS, load_piece
from toolkit.specs import spec_for


class Predictor(ABC):  # noqa: B024 - a namespace for load() and the isinstance() base, with nothing to implement
    """The entry point to every trained model: ``Predictor.load(dir).predict(texts)``."""

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             num_threads: int | None = None, quantize: bool = False, max_chars: int | None = None,
             truncate: bool = False, backend: str = "torch") -> TaskPredictor:
        """Load a model directory.

        Args:
            path: the model directory.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default CUDA when available.
            num_threads: torch intra-op threads for CPU inference (None leaves torch's setting).
            quantize: int8 dynamic quantization of the recurrent and linear layers (CPU only: with no
                ``device`` it loads on the CPU even where CUDA is available); check the
                accuracy cost on your data first (docs/benchmarks.md lists it for the shipped configs).
            max_chars: longest text accepted (default :data:`DEFAULT_MAX_CHARS`); bounds the memory a text
                can take. A classifier that reads only its first/last N tokens first clips a text to the part
                holding them, which changes nothing, so its texts are measured after that.
            truncate: cut a longer text at a whitespace boundary before ``max_chars`` instead of raising
                :class:`InputError`; the result is marked ``input_truncated``.
            backend: ``"torch"`` (default) or ``"onnx"``: ONNX Runtime on the CPU, from the directory's
                ``model.onnx`` (``bilstm export DIR --onnx``); with ``quantize=True`` its ``model.int8.onnx``.
                Results are the same as torch's (logits within 1e-4, checked at export).

        Raises:
            ModelDirError: the directory is missing, incomplete, corrupt or from a newer toolkit.
        """
        if num_threads is not None:
            if not isinstance(num_threads, int) or num_threads < 1:
                raise ConfigError(f"num_threads must be a positive integer, not {num_threads!r}")
            torch.set_num_threads(num_threads)
        if max_chars is not None and (not isinstance(max_chars, int) or isinstance(max_chars, bool)
                                      or max_chars < 1):
            raise ConfigError(f"max_chars must be a positive integer, not {max_chars!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        if backend == "onnx":
            if device is not None and torch.device(device).type != "cpu":
                raise ConfigError("backend='onnx' runs on the CPU (onnxruntime's CPU build); use device='cpu' or "
                                  "the torch backend on a GPU")
            device = "cpu"
        model_dir = load_model_dir(path)
        predictor_class = load_piece(TASKS[model_dir.task].predictor)
        if quantize and device is None:
            device = "cpu"  # int8 dynamic quantization is a CPU feature: quantize=True alone means the CPU
        predictor = predictor_class(spec_for(model_dir.task).open(model_dir), resolve_device(device))
        predictor.max_chars = max_chars or DEFAULT_MAX_CHARS
        predictor.truncate = bool(truncate)
        if backend == "onnx":
            predictor.use_onnx(int8=quantize, threads=num_threads or torch.get_num_threads())
        elif quantize:
            predictor.quantize_dynamic()
        return predictor


Predictor.register(TaskPredictor)
