"""The ONNX Runtime backend: a model directory's ``model.onnx`` (or ``model.int8.onnx``) in place of the torch network.

``Predictor.load(dir, backend="onnx")`` swaps the predictor's ``net`` for an :class:`OnnxNet`, which takes and
returns torch tensors like the network it replaces, so everything around it (tokenising, batching, decoding,
results) is the same code for both backends. The file is read through meta.json's checksums like the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from toolkit.errors import ConfigError, ModelDirError

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
        feeds = {name: tensor.cpu().numpy() for name, tensor in zip(self.input_names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])

    def eval(self) -> OnnxNet:
        return self


class OnnxTaggerNet:
    """A tagger's ONNX graph (batch dict → tag scores) in front of the torch network's CRF decoding.

    ``SequenceTaggerNet`` is called as ``net(batch)`` then ``net.decode(scores, batch)``: the graph answers the
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


def onnx_net(predictor: object, int8: bool, threads: int) -> OnnxNet:
    """The :class:`OnnxNet` of ``predictor``'s model directory (fp32 ``onnx`` or ``onnx-int8`` backend entry)."""
    model_dir = predictor.model_dir  # type: ignore[attr-defined]
    key = "onnx-int8" if int8 else "onnx"
    entry = model_dir.meta.backends.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        flag = " --int8" if int8 else ""
        raise ModelDirError(f"{model_dir.path} has no {key} export; add one with "
                            f"`bilstm export {model_dir.path} --onnx{flag}`")
    return OnnxNet(model_dir.file(entry["file"]), threads)
