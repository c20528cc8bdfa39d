"""ONNX export of the translator: the encoder and one decoder step as two graphs; the search stays in torch.

Greedy and beam search (``toolkit.nn.beam``) call the decoder one step at a time and reorder hypotheses between
steps, so the graphs are what runs per call and the search loop drives them, unchanged, on either backend:

* ``encoder.onnx``: ``source [B, S]``, ``lengths [B]`` → ``values [B, S, M]``, ``keys [B, S, K]``, ``mask [B, S]``,
  ``hidden [L, B, H]`` (+ ``cell [L, B, H]`` for an LSTM decoder, + ``feed [B, H]`` with input feeding);
* ``decoder_step.onnx``: ``tokens [B]``, the memory and the state → ``logits [B, V]``, ``weights [B, S]`` and the new
  state.

Both are checked against torch at several source lengths before anything is written (:func:`export_translator`);
``--int8`` quantizes both. meta.json's ``backends`` entry lists them under ``files``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from toolkit.errors import ExportError
from toolkit.nn.decoder import DecoderState, Memory
from toolkit.onnx_common import OPSET, PARITY_TOLERANCE, quantize_int8, random_ids

GRAPHS = {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
INT8_GRAPHS = {"encoder": "encoder.int8.onnx", "decoder_step": "decoder_step.int8.onnx"}
SOURCE_SHAPES = ((3, 17, (17, 9, 1)), (2, 5, (5, 2)), (4, 40, (40, 23, 7, 2)))


def state_names(has_cell: bool, has_feed: bool) -> list[str]:
    """The decoder state's tensors, in graph order."""
    return ["hidden", *(["cell"] if has_cell else []), *(["feed"] if has_feed else [])]


class EncoderGraph(nn.Module):
    """``TranslateNet.encode`` with plain tensors out: the memory, then the initial state."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, source: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        memory, state = self.net.encode(source, lengths)
        return (*memory, *(part for part in state if part is not None))


class StepGraph(nn.Module):
    """``AttentionDecoder.step`` with plain tensors: (tokens, memory, state) → (logits, weights, new state)."""

    def __init__(self, net: nn.Module, has_cell: bool, has_feed: bool) -> None:
        super().__init__()
        self.net, self.has_cell, self.has_feed = net, has_cell, has_feed

    def forward(self, tokens: Tensor, values: Tensor, keys: Tensor, mask: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        named = dict(zip(state_names(self.has_cell, self.has_feed), state, strict=True))
        logits, new, weights = self.net.decoder.step(
            tokens, DecoderState(named["hidden"], named.get("cell"), named.get("feed")), Memory(values, keys, mask))
        return logits, weights, *(part for part in new if part is not None)


def export_translator(predictor: Any, model_dir: str | Path, int8: bool) -> dict[str, Any]:
    """Export, check and add ``encoder.onnx`` and ``decoder_step.onnx`` (and their int8 copies) to ``model_dir``."""
    import onnxruntime

    from toolkit.artifact import add_files

    net = predictor.net.eval()
    vocab = net.decoder.embed.embedding.num_embeddings
    source_vocab = (net.source_embed or net.decoder.embed).embedding.num_embeddings
    with torch.no_grad():  # not inference_mode: the exporter traces these tensors again
        example_memory, example_state = net.encode(*_source(2, 7, (7, 3), source_vocab, 0))
    has_cell, has_feed = example_state.cell is not None, example_state.feed is not None
    state = state_names(has_cell, has_feed)
    encoder, step = EncoderGraph(net).eval(), StepGraph(net, has_cell, has_feed).eval()
    batch_axes = {"hidden": {1: "batch"}, "cell": {1: "batch"}, "feed": {0: "batch"}}
    memory_axes = {name: {0: "batch", 1: "source"} for name in ("values", "keys", "mask")}
    with tempfile.TemporaryDirectory() as scratch:
        paths = {name: Path(scratch) / file for name, file in GRAPHS.items()}
        with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated in favour of dynamo
            warnings.simplefilter("ignore")
            torch.onnx.export(encoder, _source(2, 7, (7, 3), source_vocab, 0), str(paths["encoder"]), dynamo=False,
                              input_names=["source", "lengths"], output_names=["values", "keys", "mask", *state],
                              opset_version=OPSET,
                              dynamic_axes={"source": {0: "batch", 1: "source"}, "lengths": {0: "batch"},
                                            **memory_axes, **{name: batch_axes[name] for name in state}})
            step_inputs = _step_inputs(example_memory, example_state, vocab, 0)
            torch.onnx.export(step, step_inputs, str(paths["decoder_step"]), dynamo=False,
                              input_names=["tokens", "values", "keys", "mask", *state],
                              output_names=["logits", "weights", *(f"new_{name}" for name in state)],
                              opset_version=OPSET,
                              dynamic_axes={"tokens": {0: "batch"}, **memory_axes,
                                            **{name: batch_axes[name] for name in state},
                                            **{f"new_{name}": batch_axes[name] for name in state},
                                            "logits": {0: "batch"}, "weights": {0: "batch", 1: "source"}})
        largest = _parity(encoder, step, paths, source_vocab, vocab)
        if largest > PARITY_TOLERANCE:
            raise ExportError(f"the exported ONNX translator differs from torch by {largest:.2e} (over "
                              f"{PARITY_TOLERANCE:.0e}); nothing was written: this model runs on the torch backend")
        files = {GRAPHS[name]: path for name, path in paths.items()}
        backends: dict[str, Any] = {"onnx": {
            "files": dict(GRAPHS), "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)",
            "state": state, "search": "toolkit.nn.beam in torch, one decoder_step call per output token",
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "max_abs_output_diff": float(f"{largest:.3g}")}}
        if int8:
            for name, path in paths.items():
                target = Path(scratch) / INT8_GRAPHS[name]
                quantize_int8(path, target)
                files[INT8_GRAPHS[name]] = target
            backends["onnx-int8"] = {"files": dict(INT8_GRAPHS), "source": dict(GRAPHS),
                                     "quantization": "onnxruntime dynamic, int8 weights",
                                     "onnxruntime": onnxruntime.__version__}
        add_files(model_dir, files, backends)
    return backends


def _source(batch: int, steps: int, lengths: tuple[int, ...], vocab: int, seed: int) -> tuple[Tensor, Tensor]:
    return random_ids(batch, steps, lengths, vocab, torch.Generator().manual_seed(seed)), torch.tensor(lengths)


def _step_inputs(memory: Memory, state: DecoderState, vocab: int, seed: int) -> tuple[Tensor, ...]:
    """Previous tokens and a perturbed state (not the initial one), with ``memory``."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab, (memory.values.size(0),), generator=generator)
    perturbed = [part + 0.1 * torch.randn(part.shape, generator=generator) for part in state if part is not None]
    return (tokens, *memory, *perturbed)


def _parity(encoder: nn.Module, step: nn.Module, paths: dict[str, Path], source_vocab: int, vocab: int) -> float:
    """Largest absolute difference of any output of either graph, at :data:`SOURCE_SHAPES`."""
    import onnxruntime

    sessions = {name: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for name, path in paths.items()}
    largest = 0.0
    with torch.no_grad():
        for seed, (batch, steps, lengths) in enumerate(SOURCE_SHAPES):
            source = _source(batch, steps, lengths, source_vocab, seed)
            for name, module, inputs in (("encoder", encoder, source), ("decoder_step", step, None)):
                if inputs is None:
                    memory, state = step.net.encode(*source)
                    inputs = _step_inputs(memory, state, vocab, seed)
                expected = module(*inputs)
                session = sessions[name]
                feeds = {item.name: tensor.numpy() for item, tensor in zip(session.get_inputs(), inputs, strict=True)}
                for want, got in zip(expected, session.run(None, feeds), strict=True):
                    if tuple(got.shape) != tuple(want.shape):
                        return float("inf")
                    if want.dtype == torch.bool:
                        largest = max(largest, float((want.numpy() != got).sum()))
                    else:
                        largest = max(largest, float(abs(got - want.numpy()).max()))
    return largest
