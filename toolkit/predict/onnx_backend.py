"""The ONNX Runtime backend: a model directory's ``model.onnx`` (or ``model.int8.onnx``) in place of the torch network.

``Predictor.load(dir, backend="onnx")`` swaps the predictor's ``net`` for an :class:`OnnxNet`, which takes and
returns torch tensors like the network it replaces, so everything around it (tokenising, batching, decoding,
results) is the same code for both backends. The file is read through meta.json's checksums like the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ConfigError, ModelDirError
from toolkit.nn.decoder import DecoderState, Memory
from toolkit.nn.lm import LMOutput
from toolkit.nn.seq2seq import TranslateNet

BACKENDS = ("torch", "onnx")


class OnnxNet:
    """Call an ONNX graph like the torch network: tensors in (in the exported input order), a tensor out."""

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError("backend='onnx' needs onnxruntime: pip install 'bilstm-toolkit[onnx]'") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelDirError(f"{path} cannot be loaded by ONNX Runtime ({error}); re-export it with "
                                "`bilstm export DIR --onnx`") from None
        self.input_names = [item.name for item in self.session.get_inputs()]
        self.path = path

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.run(*inputs)[0]

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Every output of the graph, for inputs in the graph's input order."""
        feeds = {name: tensor.cpu().numpy() for name, tensor in zip(self.input_names, inputs, strict=True)}
        return [torch.from_numpy(output) for output in self.session.run(None, feeds)]

    def eval(self) -> OnnxNet:
        return self


class OnnxTaggerNet:
    """A tagger's ONNX graph (batch dict → tag scores) in front of the torch network's CRF decoding.

    ``TagNet`` is called as ``net(batch)`` then ``net.decode(scores, batch)``: the graph answers the
    first (its inputs are named after the batch keys), the torch network's CRF the second.
    """

    def __init__(self, scores: OnnxNet, torch_net: torch.nn.Module) -> None:
        self.scores, self.torch_net = scores, torch_net.eval()

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scores(*(batch[name] for name in self.scores.input_names))

    def decode(self, scores: torch.Tensor, batch: dict[str, torch.Tensor], with_marginals: bool = False
               ) -> tuple[list[list[int]], torch.Tensor | None]:
        return self.torch_net.decode(scores, batch, with_marginals=with_marginals)

    def eval(self) -> OnnxTaggerNet:
        return self


class OnnxLanguageModelNet:
    """A language model's graph (ids, lengths, state → log-probabilities, new state) behind ``LMNet``'s
    interface, so that scoring, corpus perplexity and sampling (``LMPredictor``) are the same code on both backends.

    The graph ends in log-probabilities, which ride in :class:`LMOutput`'s ``hidden``; :meth:`logits` passes them
    through (the predictor's ``log_softmax`` of log-probabilities gives them back). A missing state is zeros.
    """

    def __init__(self, graph: OnnxNet, torch_net: torch.nn.Module) -> None:
        encoder = torch_net.config.encoder
        self.graph = graph
        self.state_parts = 2 if encoder.cell == "lstm" else 1
        self.layers, self.hidden_size = encoder.num_layers, encoder.hidden_size

    def __call__(self, ids: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None,
                 lengths: torch.Tensor | None = None) -> LMOutput:
        batch, steps = ids.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long)
        if state is None:
            state = tuple(torch.zeros(self.layers, batch, self.hidden_size) for _ in range(self.state_parts))
        log_probs, *new = self.graph.run(ids, lengths, *state)
        return LMOutput(log_probs, tuple(new))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden

    def step(self, ids: torch.Tensor, state: tuple[torch.Tensor, ...] | None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One token per row: ``ids [batch]`` → (log-probabilities ``[batch, vocab]``, new state)."""
        output = self(ids.unsqueeze(1), state)
        return output.hidden[:, -1], output.state

    def eval(self) -> OnnxLanguageModelNet:
        return self


class OnnxTranslatorNet:
    """The translator's two graphs (``encoder.onnx``, ``decoder_step.onnx``) behind ``TranslateNet``'s interface.

    ``translate`` is ``TranslateNet.translate`` itself, run with this object as the network: it calls
    :meth:`encode`, then greedy or beam search (``toolkit.nn.beam``) calls :meth:`step` through ``self.decoder``,
    so the search, its length limits and its attention bookkeeping are one piece of code for both backends.
    """

    def __init__(self, encoder: OnnxNet, step: OnnxNet, torch_net: torch.nn.Module, state: list[str]) -> None:
        self.encoder_graph, self.step_graph, self.state = encoder, step, state
        self.bos, self.eos, self.banned = torch_net.bos, torch_net.eos, torch_net.banned
        self.decoder = self  # the search calls net.decoder.step

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        values, keys, mask, *state = self.encoder_graph.run(source, lengths)
        return Memory(values, keys, mask), self._state(state)

    def step(self, tokens: torch.Tensor, state: DecoderState, memory: Memory
             ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        parts = [part for part in state if part is not None]
        logits, weights, *new = self.step_graph.run(tokens, *memory, *parts)
        return logits, self._state(new), weights

    def _state(self, parts: list[torch.Tensor]) -> DecoderState:
        named = dict(zip(self.state, parts, strict=True))
        return DecoderState(named["hidden"], named.get("cell"), named.get("feed"))

    def translate(self, source: torch.Tensor, lengths: torch.Tensor, decoding: object,
                  return_attention: bool = False) -> list:
        with torch.inference_mode():
            return TranslateNet.translate(self, source, lengths, decoding, return_attention=return_attention)

    def eval(self) -> OnnxTranslatorNet:
        return self


def onnx_translator(predictor: object, int8: bool, threads: int) -> OnnxTranslatorNet:
    """The translator's graphs from its model directory's ``onnx`` (or ``onnx-int8``) backend entry."""
    model_dir = predictor.model_dir  # type: ignore[attr-defined]
    files = _export_entry(model_dir, int8, "files", lambda files: isinstance(files, dict)
                          and set(files) == {"encoder", "decoder_step"})
    state = model_dir.meta.backends["onnx"].get("state", ["hidden"])
    return OnnxTranslatorNet(OnnxNet(model_dir.file(files["encoder"]), threads),
                             OnnxNet(model_dir.file(files["decoder_step"]), threads), predictor.net, state)


def onnx_net(predictor: object, int8: bool, threads: int) -> OnnxNet:
    """The :class:`OnnxNet` of ``predictor``'s model directory (fp32 ``onnx`` or ``onnx-int8`` backend entry)."""
    model_dir = predictor.model_dir  # type: ignore[attr-defined]
    return OnnxNet(model_dir.file(_export_entry(model_dir, int8, "file", lambda name: isinstance(name, str))),
                   threads)


def _export_entry(model_dir: object, int8: bool, field: str, valid: Callable[[object], bool]) -> Any:
    """``field`` of meta.json's ``onnx`` (or ``onnx-int8``) backend entry; a clear error when there is none."""
    key = "onnx-int8" if int8 else "onnx"
    entry = model_dir.meta.backends.get(key)  # type: ignore[attr-defined]
    if not isinstance(entry, dict) or not valid(entry.get(field)):
        flag = " --int8" if int8 else ""
        raise ModelDirError(f"{model_dir.path} has no {key} export; add one with "  # type: ignore[attr-defined]
                            f"`bilstm export {model_dir.path} --onnx{flag}`")  # type: ignore[attr-defined]
    return entry[field]
