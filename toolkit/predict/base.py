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
from toolkit.data.textrules import cut_to_chars, excerpt, text_problem
from toolkit.errors import ConfigError, DataError, InputError, ModelDirError

DEFAULT_MAX_CHARS = 20_000
"""Longest text (in characters, after any lossless clipping) a Predictor takes unless told otherwise."""

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


class Predictor:
    """Base class; use :meth:`Predictor.load` to get the right subclass for a model directory."""

    task: ClassVar[str] = ""

    def __init__(self, model_dir: ModelDir, device: torch.device) -> None:
        self.model_dir = model_dir
        self.meta: dict[str, Any] = model_dir.meta
        self.device = device
        self.max_chars = DEFAULT_MAX_CHARS
        """Longest text the model takes (characters, after lossless clipping); see :meth:`model_texts`."""
        self.truncate = False
        """Cut texts over ``max_chars`` (the result says ``input_truncated``) instead of refusing them."""

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             num_threads: int | None = None, quantize: bool = False, max_chars: int | None = None,
             truncate: bool = False) -> Predictor:
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
        model_dir = load_model_dir(path)
        module_name, class_name = PREDICTORS[model_dir.task].split(":")
        predictor_class = getattr(importlib.import_module(module_name), class_name)
        if cls is not Predictor and not issubclass(predictor_class, cls):
            raise ModelDirError(f"{path} holds a {model_dir.task!r} model, not one for {cls.__name__}")
        if quantize and device is None:
            device = "cpu"  # int8 dynamic quantization is a CPU feature: quantize=True alone means the CPU
        predictor = predictor_class(model_dir, resolve_device(device))
        predictor.max_chars = max_chars or DEFAULT_MAX_CHARS
        predictor.truncate = bool(truncate)
        if quantize:
            predictor.quantize_dynamic()
        return predictor

    # ---- what the model reads -----------------------------------------------------------------------------

    def clip(self, text: str) -> str:
        """The part of a (valid) text the model reads; tasks that read only part of a text override this."""
        return text

    def _read(self, text: object) -> tuple[str, bool]:
        """``(text the model reads, whether it was cut)``.

        Raises:
            ValueError: why the text cannot be read (invalid, blank, or too long without ``truncate``).
        """
        problem = text_problem(text)
        if problem is not None:
            raise ValueError(problem)
        clipped = self.clip(text)
        if len(clipped) <= self.max_chars:
            return clipped, False
        if not self.truncate:
            raise ValueError(f"is {len(clipped)} characters long, over the limit of {self.max_chars}: the model "
                             "would not read all of it; split it, raise the limit (max_chars, --max-chars) or "
                             "cut it (truncate=True, --truncate)")
        return cut_to_chars(clipped, self.max_chars), True

    def input_problem(self, text: object) -> str | None:
        """Why this predictor refuses ``text`` (invalid, blank, too long), or None; what a batch job records."""
        try:
            self._read(text)
        except ValueError as error:
            return str(error)
        return None

    def refuse_unusable(self, path: str | Path, lines: Sequence[tuple[int, str]]) -> None:
        """Raise a :class:`DataError` naming the file and line of the first text this predictor refuses."""
        for line, text in lines:
            problem = self.input_problem(text)
            if problem is not None:
                raise DataError(path, f"the text {problem}", line)

    def model_texts(self, texts: Sequence[str]) -> tuple[list[str], list[bool]]:
        """Validate ``texts`` and return what the model reads of each, and which were cut (``truncate``).

        Raises:
            InputError: naming the first unusable text (its index, a quote and the problem).
        """
        if isinstance(texts, str):
            raise InputError("predict() takes a list of texts, not a single string; wrap it: predict([text])")
        cut: list[bool] = []
        read: list[str] = []
        for position, text in enumerate(texts):  # one pass, so the first unusable text is the one named
            try:
                model_text, was_cut = self._read(text)
            except ValueError as error:
                quote = f" {excerpt(text)}" if isinstance(text, str) else ""
                raise InputError(f"text {position}{quote} {error}") from None
            read.append(model_text)
            cut.append(was_cut)
        return read, cut

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
