"""``bilstm export MODEL --onnx [--int8]``: add an ONNX Runtime copy of a model to its model directory.

The network is exported with torch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``): it maps
``nn.LSTM``/``nn.GRU``/``nn.RNN`` to ONNX's own LSTM/GRU/RNN nodes, which ONNX Runtime runs with its fused kernels and
its int8 quantizer recognises. torch 2.13's default dynamo exporter stops on the exact-padding encoder (a
data-dependent check on the lengths) and would unroll the recurrences. Batch and time axes stay dynamic; after
export the ONNX model is run at several lengths against torch and refused unless the logits agree within
:data:`PARITY_TOLERANCE`. ``--int8`` adds ``model.int8.onnx`` (ONNX Runtime's dynamic int8 quantization of the
weights). Both files are listed and checksummed in meta.json (``files``), and ``backends`` says what they are.

Covered: the classifier (the whole network: ids, lengths → logits) with the fused cells (``rnn_tanh``, ``rnn_relu``,
``lstm``, ``gru``). The other tasks and cells run on torch; asking for them is a clear error.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ConfigError

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OPSET = 17
PARITY_TOLERANCE = 1e-4
"""Largest absolute logit difference between torch and ONNX Runtime (fp32) accepted at export."""
PARITY_SHAPES = ((3, 17, (17, 9, 1)), (2, 5, (5, 2)), (4, 64, (64, 40, 7, 1)))
"""(batch, time, lengths) the exported graph is checked at: dynamic axes, padding, a one-token text."""


def _inputs(batch: int, steps: int, lengths: tuple[int, ...], vocab_size: int, seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random right-padded ids ``[batch, steps]`` (0 = padding) and their ``lengths [batch]``."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, max(3, vocab_size), (batch, steps), generator=generator)
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids, torch.tensor(lengths)


def _check_exportable(predictor: Any) -> None:
    from toolkit.nn.encoder import FUSED_CELLS

    if not predictor.has_onnx_export:  # the predictor class says whether its net can be swapped for ONNX
        raise ConfigError(f"ONNX export covers classify models for now, not {predictor.task!r}: "
                          "this model runs on the torch backend")
    encoder = predictor.config.network.encoder
    if encoder.cell not in FUSED_CELLS:
        raise ConfigError(f"ONNX export covers the fused cells ({', '.join(FUSED_CELLS)}), not {encoder.cell!r}: "
                          "this model runs on the torch backend (docs/cells.md)")
    if encoder.padding == "packed":
        raise ConfigError("ONNX export needs encoder.padding 'reverse' (the default); packed sequences do not export")


def export_onnx(model_dir: str | Path, int8: bool = False) -> dict[str, Any]:
    """Export ``model_dir``'s network to ONNX (and int8), check parity, add the files to the directory.

    Returns:
        meta.json's new ``backends`` entries (file names, opset, the parity measured).

    Raises:
        ConfigError: the task or cell has no ONNX export, or onnx/onnxruntime is not installed.
        RuntimeError: the exported graph disagrees with torch (nothing is written then).
    """
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'bilstm-toolkit[onnx]'") from None
    from toolkit.artifact import add_files
    from toolkit.predict import Predictor

    predictor = Predictor.load(model_dir, device="cpu")
    _check_exportable(predictor)
    net = predictor.net.eval()
    vocab_size = len(predictor.vocab)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / ONNX_FILE
        with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated in favour of dynamo
            warnings.simplefilter("ignore")
            torch.onnx.export(net, _inputs(2, 7, (7, 3), vocab_size), str(onnx_path), dynamo=False,
                              input_names=["ids", "lengths"], output_names=["logits"], opset_version=OPSET,
                              dynamic_axes={"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                                            "logits": {0: "batch"}})
        largest = _parity(net, onnx_path, vocab_size)
        if largest > PARITY_TOLERANCE:
            raise RuntimeError(f"the exported ONNX model differs from torch by {largest:.2e} (over "
                               f"{PARITY_TOLERANCE:.0e}); nothing was written")
        files = {ONNX_FILE: onnx_path}
        backends = {"onnx": {"file": ONNX_FILE, "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)",
                             "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                             "max_abs_logit_diff": float(f"{largest:.3g}")}}
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            int8_path = Path(scratch) / INT8_FILE
            quiet = logging.getLogger()  # the quantizer logs a pre-processing hint through the root logger
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                quantize_dynamic(str(onnx_path), str(int8_path), weight_type=QuantType.QInt8)
            finally:
                quiet.setLevel(level)
            files[INT8_FILE] = int8_path
            backends["onnx-int8"] = {"file": INT8_FILE, "source": ONNX_FILE,
                                     "quantization": "onnxruntime dynamic, int8 weights",
                                     "onnxruntime": onnxruntime.__version__}
        add_files(model_dir, files, backends)
    return backends


def _parity(net: torch.nn.Module, onnx_path: Path, vocab_size: int) -> float:
    """Largest absolute logit difference between torch and ONNX Runtime over :data:`PARITY_SHAPES`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    largest = 0.0
    with torch.inference_mode():
        for seed, (batch, steps, lengths) in enumerate(PARITY_SHAPES):
            ids, lengths_tensor = _inputs(batch, steps, lengths, vocab_size, seed)
            expected = net(ids, lengths_tensor).numpy()
            got = session.run(None, {"ids": ids.numpy(), "lengths": lengths_tensor.numpy()})[0]
            largest = max(largest, float(abs(got - expected).max()))
    return largest


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="the model directory to add the export to")
    parser.add_argument("--onnx", action="store_true", required=True,
                        help="export to ONNX (model.onnx); the only format for now")
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (int8 weights)")


def run(args: argparse.Namespace) -> int:
    import json

    backends = export_onnx(args.model_dir, int8=args.int8)
    print(json.dumps({"model_dir": str(args.model_dir), "backends": backends}))
    return 0
