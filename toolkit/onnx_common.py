"""What the ONNX exports share (toolkit/onnx_export.py: classifier and tagger; toolkit/onnx_seq2seq.py: translator)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

OPSET = 17
PARITY_TOLERANCE = 1e-4
"""Largest absolute output difference between torch and ONNX Runtime (fp32) accepted at export."""


def random_ids(batch: int, steps: int, lengths: tuple[int, ...], high: int, generator: torch.Generator,
         trailing: tuple[int, ...] = ()) -> torch.Tensor:
    """Random ids ``[batch, steps, *trailing]`` in ``[1, high)``, 0 (padding) past each row's length."""
    ids = torch.randint(1, max(2, high), (batch, steps, *trailing), generator=generator)
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of ``source``'s weights (LSTM, GRU, MatMul, Gather) into ``target``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()  # the quantizer logs a pre-processing hint through the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        quiet.setLevel(level)
