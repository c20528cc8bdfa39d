"""``bilstm export MODEL --onnx [--int8]``: add an ONNX Runtime copy of a model to its model directory.

The network is exported with torch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``): it maps
``nn.LSTM``/``nn.GRU``/``nn.RNN`` to ONNX's own LSTM/GRU/RNN nodes, which ONNX Runtime runs with its fused kernels and
its int8 quantizer recognises. torch 2.13's default dynamo exporter stops on the exact-padding encoder (a
data-dependent check on the lengths) and would unroll the recurrences. Batch and time axes stay dynamic; after
export the ONNX model is run at several lengths against torch and refused unless the logits agree within
:data:`PARITY_TOLERANCE`. ``--int8`` adds ``model.int8.onnx`` (ONNX Runtime's dynamic int8 quantization of the
weights). Both files are listed and checksummed in meta.json (``files``), and ``backends`` says what they are.

Covered, with the fused cells (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``): the classifier (the whole network:
ids, lengths → logits), the tagger (words, casing, character CNN, lengths → tag scores; the CRF decodes the scores
in torch) and the language model (ids, lengths, recurrent state → log-probabilities and the new state: scoring and
corpus perplexity run it over whole texts and windows, sampling one token at a time with the state carried).
Taggers with transformer features or a character BiLSTM, and the other cells, run on torch; asking for them is a
clear error. The translator's two graphs (encoder, one decoder step) are toolkit/onnx_seq2seq.py's. An ensemble
(`bilstm ensemble`) of classifiers or taggers exports as one network (every member's cell checked); one of language
models does not.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ConfigError, ExportError
from toolkit.onnx_common import OPSET, PARITY_TOLERANCE, quantize_int8, random_ids

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
PARITY_SHAPES = ((3, 17, (17, 9, 1)), (2, 5, (5, 2)), (4, 64, (64, 40, 7, 1)))
"""(batch, time, lengths) the exported graph is checked at: dynamic axes, padding, a one-token text."""


@dataclass(frozen=True)
class ExportRecipe:
    """What to export for one task: a module taking positional tensors, their names and example inputs."""

    module: torch.nn.Module
    input_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    make_inputs: Callable[[int, int, tuple[int, ...], int], tuple[torch.Tensor, ...]]
    """``(batch, time, lengths, seed)`` → the module's inputs: random ids, right-padded, with those lengths."""
    output_names: tuple[str, ...]
    """The first is ``[batch, …]`` per text or ``[batch, time, …]`` per token; any others are recurrent state
    ``[layers, batch, hidden]``, meaningful only for the texts that fill the time axis."""


def classifier_recipe(predictor: Any) -> ExportRecipe:
    """The whole classifier: ``ids [B, T]``, ``lengths [B]`` → ``logits [B, classes]``."""
    vocab_size = len(predictor.vocab)

    def make_inputs(batch: int, steps: int, lengths: tuple[int, ...], seed: int) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        return random_ids(batch, steps, lengths, vocab_size, generator), torch.tensor(lengths)

    return ExportRecipe(predictor.net.eval(), ("ids", "lengths"),
                        {"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "logits": {0: "batch"}},
                        make_inputs, ("logits",))


class _TaggerScores(torch.nn.Module):
    """The tagger network up to its per-token tag scores, with the batch dict's tensors as positional inputs.

    The CRF's Viterbi and forward–backward stay in torch on the scores (``TagNet.decode``): they are
    a small part of the time (docs/benchmarks.md §14) and keep the decoding code in one place.
    """

    def __init__(self, net: torch.nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.net, self.keys = net, keys

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.net(dict(zip(self.keys, tensors, strict=True)))


def tagger_recipe(predictor: Any) -> ExportRecipe:
    """Word (+ casing, + character CNN) features → encoder → tag scores ``[B, T, tags]``."""
    net = predictor.net.eval()
    keys = ("words", *(("casing",) if net.casing is not None else ()), *(("chars",) if net.chars is not None else ()),
            "lengths")  # the features the network has: an input it does not read would be pruned from the graph
    vocab_size, num_chars = net.embed.embedding.num_embeddings, predictor.config.num_chars
    num_casings = net.casing.num_embeddings if net.casing is not None else 2

    def make_inputs(batch: int, steps: int, lengths: tuple[int, ...], seed: int) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        inputs = {"words": random_ids(batch, steps, lengths, vocab_size, generator),
                  "casing": random_ids(batch, steps, lengths, num_casings, generator),
                  "chars": random_ids(batch, steps, lengths, num_chars, generator, (1 + seed % 3 * 4,)),
                  "lengths": torch.tensor(lengths)}
        return tuple(inputs[key] for key in keys)

    axes = {"words": {0: "batch", 1: "time"}, "casing": {0: "batch", 1: "time"},
            "chars": {0: "batch", 1: "time", 2: "word_length"}, "lengths": {0: "batch"},
            "scores": {0: "batch", 1: "time"}}
    return ExportRecipe(_TaggerScores(net, keys).eval(), keys, {key: axes[key] for key in (*keys, "scores")},
                        make_inputs, ("scores",))


class _LanguageModelGraph(torch.nn.Module):
    """``LMNet`` with plain tensors: (ids, lengths, state…) → (log-probabilities, new state…).

    The graph ends in log-probabilities (``log_softmax`` of the logits; the adaptive softmax's own), so ONNX Runtime
    does the softmax too; the predictor's ``log_softmax`` of them changes nothing.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.net(ids, tuple(state), lengths)
        return torch.log_softmax(self.net.logits(output.hidden).float(), dim=-1), *output.state


def lm_state_names(cell: str) -> tuple[str, ...]:
    """The recurrent state a language model's graph takes and returns, in order (an LSTM has a cell state too)."""
    return ("hidden", "cell") if cell == "lstm" else ("hidden",)


def lm_recipe(predictor: Any) -> ExportRecipe:
    """``ids [B, T]``, ``lengths [B]``, state ``[L, B, H]`` each → ``log_probs [B, T, V]``, new state."""
    net = predictor.net.eval()
    encoder = net.config.encoder
    state = lm_state_names(encoder.cell)

    def make_inputs(batch: int, steps: int, lengths: tuple[int, ...], seed: int) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        ids = random_ids(batch, steps, lengths, net.vocab_size, generator)
        carried = [0.5 * torch.randn(encoder.num_layers, batch, encoder.hidden_size, generator=generator)
                   for _ in state]  # a state carried from earlier text, not zeros
        return ids, torch.tensor(lengths), *carried

    axes = {"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "log_probs": {0: "batch", 1: "time"},
            **{name: {1: "batch"} for name in state}, **{f"new_{name}": {1: "batch"} for name in state}}
    return ExportRecipe(_LanguageModelGraph(net).eval(), ("ids", "lengths", *state), axes, make_inputs,
                        ("log_probs", *(f"new_{name}" for name in state)))


def one_graph_export(recipe: Callable[[Any], ExportRecipe]) -> Callable[[Any, str | Path, bool], dict[str, Any]]:
    """A task's ``onnx_export`` (the task table's field) from the recipe of its one graph."""
    def export(predictor: Any, model_dir: str | Path, int8: bool) -> dict[str, Any]:
        import onnxruntime

        return _export_one_graph(recipe(predictor), model_dir, int8, onnxruntime.__version__)

    export.__doc__ = f"Export, check and add the graph of {recipe.__name__} (and its int8 copy) to ``model_dir``."
    return export


export_classifier = one_graph_export(classifier_recipe)
export_tagger = one_graph_export(tagger_recipe)
export_language_model = one_graph_export(lm_recipe)
# The translator's two graphs are toolkit/onnx_seq2seq.py's export_translator.


def exported_tasks() -> list[str]:
    """The tasks whose entry in the task table names an ONNX export."""
    from toolkit.registry import TASKS

    return [task for task, entry in TASKS.items() if entry.onnx_export is not None]


def _check_exportable(predictor: Any) -> None:
    """Refuse, before any work, what does not export: the task, the cell, the padding (of every member of an
    ensemble), what the task's predictor says it cannot export (``onnx_refusal``: a tagger's transformer or LM
    features, say), or an ensemble network that does not export (its ``onnx_refusal``)."""
    from toolkit.nn.encoder import FUSED_CELLS
    from toolkit.registry import TASKS, load_piece

    entry = TASKS[predictor.task]
    if entry.onnx_export is None:
        raise ConfigError(f"ONNX export covers {', '.join(exported_tasks())} models for now, not {predictor.task!r}: "
                          "this model runs on the torch backend")
    for config in _network_configs(predictor):
        encoder = getattr(config.network, "encoder", None)  # a network without a recurrent encoder: no cell
        if encoder is not None and encoder.cell not in FUSED_CELLS:
            raise ConfigError(f"ONNX export covers the fused cells ({', '.join(FUSED_CELLS)}), not {encoder.cell!r}: "
                              "this model runs on the torch backend (docs/cells.md)")
        if encoder is not None and encoder.padding == "packed":
            raise ConfigError("ONNX export needs encoder.padding 'reverse' (the default); packed sequences do not "
                              "export")
    refusal = load_piece(entry.predictor).onnx_refusal(predictor) or getattr(getattr(predictor, "net", None),
                                                                             "onnx_refusal", None)
    if refusal is not None:
        raise ConfigError(f"{refusal}: this model runs on the torch backend")


def _network_configs(predictor: Any) -> list[Any]:
    """The config of each network the predictor runs: its own, or each member's of an ensemble (`bilstm ensemble`),
    whose own config is only what its members share."""
    from toolkit.specs import spec_for
    from toolkit.specs.base import is_ensemble

    meta = getattr(predictor, "meta", None)
    if meta is None or not is_ensemble(meta):
        return [predictor.config]
    return spec_for(predictor.task).member_configs(meta, predictor.model_dir.path)


def export_onnx(model_dir: str | Path, int8: bool = False) -> dict[str, Any]:
    """Export ``model_dir``'s network to ONNX (and int8), check parity, add the files to the directory.

    Returns:
        meta.json's new ``backends`` entries (file names, opset, the parity measured).

    Raises:
        ConfigError: the task or cell has no ONNX export, or onnx/onnxruntime is not installed.
        ExportError: the exported graph disagrees with torch (nothing is written then).
    """
    try:
        import onnxruntime  # noqa: F401 (the exports import it again; refuse before any work when it is missing)
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'bilstm-toolkit[onnx]'") from None
    from toolkit.artifact import writing
    from toolkit.predict import Predictor
    from toolkit.registry import TASKS, load_piece

    predictor = Predictor.load(model_dir, device="cpu")
    _check_exportable(predictor)
    # The graphs are written to a temporary folder (removed afterwards, whatever happens) and only then copied,
    # checksummed, into a new copy of the model directory that replaces it (add_files): a full disk leaves no
    # partial model.onnx anywhere, and the model directory as it was.
    with writing(f"the ONNX export in the temporary folder {tempfile.gettempdir()}", f"{model_dir} is unchanged",
                 "set TMPDIR to another folder"):
        return load_piece(TASKS[predictor.task].onnx_export)(predictor, model_dir, int8)


def _export_one_graph(recipe: ExportRecipe, model_dir: str | Path, int8: bool, ort_version: str) -> dict[str, Any]:
    """Export, check and add one graph (a classifier's, tagger's or language model's; see :func:`export_onnx`)."""
    from toolkit.artifact import add_files

    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / ONNX_FILE
        with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated in favour of dynamo
            warnings.simplefilter("ignore")
            torch.onnx.export(recipe.module, recipe.make_inputs(2, 7, (7, 3), 0), str(onnx_path), dynamo=False,
                              input_names=list(recipe.input_names), output_names=list(recipe.output_names),
                              opset_version=OPSET, dynamic_axes=recipe.dynamic_axes)
        largest = _parity(recipe, onnx_path)
        if largest > PARITY_TOLERANCE:
            raise ExportError(f"the exported ONNX model differs from torch by {largest:.2e} (over "
                              f"{PARITY_TOLERANCE:.0e}); nothing was written: this model runs on the torch backend")
        files = {ONNX_FILE: onnx_path}
        backends = {"onnx": {"file": ONNX_FILE, "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)",
                             "inputs": list(recipe.input_names), "output": recipe.output_names[0],
                             **({"state_outputs": list(recipe.output_names[1:])} if len(recipe.output_names) > 1
                                else {}),
                             "torch": torch.__version__, "onnxruntime": ort_version,
                             "max_abs_output_diff": float(f"{largest:.3g}")}}
        if int8:
            int8_path = Path(scratch) / INT8_FILE
            quantize_int8(onnx_path, int8_path)
            files[INT8_FILE] = int8_path
            backends["onnx-int8"] = {"file": INT8_FILE, "source": ONNX_FILE,
                                     "quantization": "onnxruntime dynamic, int8 weights",
                                     "onnxruntime": ort_version}
        add_files(model_dir, files, backends)
    return backends


def _parity(recipe: ExportRecipe, onnx_path: Path) -> float:
    """Largest absolute output difference between torch and ONNX Runtime over :data:`PARITY_SHAPES`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    recipe.module.eval()  # the exporter restores the mode it found; compare without dropout whatever that was
    largest = 0.0
    with torch.inference_mode():
        for seed, (batch, steps, lengths) in enumerate(PARITY_SHAPES):
            inputs = recipe.make_inputs(batch, steps, lengths, seed)
            expected = recipe.module(*inputs)
            expected = [item.numpy() for item in (expected if isinstance(expected, tuple) else (expected,))]
            got = session.run(None, {name: tensor.numpy() for name, tensor in zip(recipe.input_names, inputs,
                                                                                   strict=True)})
            if [item.shape for item in got] != [item.shape for item in expected]:
                return float("inf")
            for row, length in enumerate(lengths):
                # padded positions of per-token outputs are never read (the CRF masks them, scoring skips them)
                real = (row, slice(0, length)) if expected[0].ndim == 3 else (row,)
                largest = max(largest, float(abs(got[0][real] - expected[0][real]).max()))
                if length == steps:  # a state is read on only after text that fills the window
                    for want, have in zip(expected[1:], got[1:], strict=True):
                        largest = max(largest, float(abs(have[:, row] - want[:, row]).max()))
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
