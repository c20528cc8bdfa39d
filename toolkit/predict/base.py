"""What every task's predictor shares (no Lightning import): text rules, length limits, device, quantization.

Predictors hold no per-request state, so one instance can serve concurrent requests. Which predictor a model
directory needs is decided in :mod:`toolkit.predict.loader` (``Predictor.load``), so this base class never
imports the task predictors that subclass it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from toolkit.data.textrules import cut_to_chars, excerpt, text_problem
from toolkit.errors import ConfigError, DataError, InputError, ModelDirError
from toolkit.specs.base import Opened

DEFAULT_MAX_CHARS = 20_000
"""Longest text (in characters, after any lossless clipping) a predictor takes unless told otherwise."""


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


class TaskPredictor:
    """What every task's predictor shares: validation and length rules, the device, int8 quantization.

    Get one with :meth:`toolkit.Predictor.load`, which picks the task's subclass from the task table.
    """

    task: ClassVar[str] = ""

    def __init__(self, opened: Opened, device: torch.device) -> None:
        self.model_dir = opened.model_dir
        self.meta = opened.model_dir.meta
        self.config: Any = opened.config
        """The typed meta.json ``model_config`` (the task spec's dataclass)."""
        self.device = device
        self.max_chars = DEFAULT_MAX_CHARS
        """Longest text the model takes (characters, after lossless clipping); see :meth:`model_texts`."""
        self.truncate = False
        """Cut texts over ``max_chars`` (the result says ``input_truncated``) instead of refusing them."""

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

    def onnx_refusal(self) -> str | None:
        """Why this model's network cannot be exported although its task can (None: it can); `bilstm export`
        refuses with it before any work."""
        return None

    def use_onnx(self, int8: bool, threads: int) -> None:
        """Run ``self.net`` with ONNX Runtime from the directory's ``model.onnx`` (``model.int8.onnx`` if ``int8``)."""
        from toolkit.predict.onnx_backend import onnx_net
        from toolkit.registry import TASKS

        if TASKS[self.task].onnx_export is None:
            raise ConfigError(f"backend='onnx' does not cover {self.task!r} models: use the torch backend")
        self.net = onnx_net(self, int8, threads)

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels or [])

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[Any]:
        """Predict for each text; results in input order. Each result has ``to_dict()`` (JSON-able)."""
        raise NotImplementedError

    def evaluate(self, data_file: str | Path, **options: Any) -> dict[str, Any]:
        """Score the model on a labelled file; one JSON-able dict (``bilstm evaluate``).

        ``options`` are the CLI's generic options (``text_field``, ``label_field``, ``batch_size``…);
        a task ignores those it has no use for.
        """
        raise NotImplementedError
