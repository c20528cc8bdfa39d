"""What every task's spec does: type meta.json's task sections, name the side files, build and load the network.

A spec is the only place that knows a task's model-directory format::

    SPEC.save(path, config, data_export, state_dict, training=..., provenance=...)   # bilstm fit's export
    opened = SPEC.open(path)     # checksums, typed sections, side files read (vocabularies…) and sizes checked
    net = SPEC.load_net(opened.model_dir, opened.config)                            # weights checked strictly

Subclasses set ``task``, ``config_type`` (the dataclass of meta.json ``model_config``) and ``tokenizer_type``
(of meta.json ``tokenizer``), and implement :meth:`side_files`, :meth:`read_side_files` (vocabularies, subword
tokenizers: a bad file is a :class:`ModelDirError`) and :meth:`build_net`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from torch import nn

from toolkit.artifact import ModelDir, load_model_dir, save_model_dir
from toolkit.config import config_from_dict, config_to_dict
from toolkit.data.export import DataExport
from toolkit.errors import ConfigError, ModelDirError
from toolkit.meta import ModelMeta

ConfigT = TypeVar("ConfigT")
TokenizerT = TypeVar("TokenizerT")


class Opened(NamedTuple):
    """A checked model directory of one task: its files, typed sections and loaded side files."""

    model_dir: ModelDir
    config: Any
    tokenizer: Any
    side: Any
    """What :meth:`TaskSpec.read_side_files` gives (a vocabulary, a pair of tokenizers…)."""
    spec: Any = None
    """The spec that opened it (its ``load_net`` builds the network): a predictor needs no spec of its own."""


class TaskSpec(Generic[ConfigT, TokenizerT]):
    """The model-directory format of one task (see the module docstring)."""

    task: ClassVar[str] = ""
    config_type: ClassVar[type] = object
    tokenizer_type: ClassVar[type] = object

    # ---- the format ------------------------------------------------------------------------------------------

    def side_files(self, tokenizer: TokenizerT) -> tuple[str, ...]:
        """The files besides the weights that loading reads (each must be listed in meta.json)."""
        raise NotImplementedError

    def build_net(self, config: ConfigT, labels: list[str] | None, **options: Any) -> nn.Module:
        """The task's network for ``config`` (fresh weights)."""
        raise NotImplementedError

    def read_side_files(self, model_dir: ModelDir, config: ConfigT, tokenizer: TokenizerT) -> Any:
        """Load the side files and check them against ``config`` (sizes); raise :class:`ModelDirError`."""
        raise NotImplementedError

    def parse(self, meta: ModelMeta, where: str | Path) -> tuple[ConfigT, TokenizerT]:
        """meta.json's ``model_config`` and ``tokenizer`` as the task's dataclasses."""
        try:
            config = config_from_dict(self.config_type, meta.model_config, "meta.json model_config")
            tokenizer = config_from_dict(self.tokenizer_type, meta.tokenizer, "meta.json tokenizer")
            for part in (config, tokenizer):
                if hasattr(part, "validate"):
                    part.validate()
        except (ConfigError, TypeError, ValueError) as error:
            raise ModelDirError(f"{where}: meta.json does not describe a valid {self.task!r} model ({error}); "
                                "re-export the model") from None
        return config, tokenizer

    # ---- writing ---------------------------------------------------------------------------------------------

    def save(self, path: str | Path, config: ConfigT, data: DataExport, state_dict: dict[str, Any], *,
             training: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
             init_from: Iterable[dict[str, Any]] = ()) -> Path:
        """Write a model directory for ``config``'s network trained on ``data`` (atomically)."""
        tokenizer = config_from_dict(self.tokenizer_type, data.tokenizer, "the data module's tokenizer settings")
        missing = sorted(set(self.side_files(tokenizer)) - set(data.json_files) - set(data.extra_files))
        if missing:
            raise ValueError(f"a {self.task!r} model directory needs {missing}, which the data module did not give")
        meta = ModelMeta(task=self.task, model_config=config_to_dict(config), labels=data.labels,
                         tokenizer=config_to_dict(tokenizer), training={**(training or {}), "data": data.record},
                         provenance=dict(provenance or {}), init_from=list(init_from))
        return save_model_dir(path, meta, state_dict, data.json_files, data.extra_files)

    # ---- reading ---------------------------------------------------------------------------------------------

    def open(self, path: str | Path | ModelDir) -> Opened:
        """Load and check a directory of this task: checksums, typed sections, side files listed and read, sizes."""
        model_dir = path if isinstance(path, ModelDir) else load_model_dir(path)
        if model_dir.task != self.task:
            raise ModelDirError(f"{model_dir.path} holds a {model_dir.task!r} model, not a {self.task!r} model")
        config, tokenizer = self.parse(model_dir.meta, model_dir.path)
        for name in self.side_files(tokenizer):
            model_dir.file(name)  # raises if meta.json does not list it
        return Opened(model_dir, config, tokenizer, self.read_side_files(model_dir, config, tokenizer), self)

    def load_net(self, model_dir: ModelDir, config: ConfigT, **options: Any) -> nn.Module:
        """The network with the directory's weights, loaded strictly (mismatches named)."""
        net = self.build_net(config, model_dir.meta.labels, **options)
        load_weights(net, model_dir)
        return net.eval()


def load_weights(net: nn.Module, model_dir: ModelDir) -> None:
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


def read_json_side_file(model_dir: ModelDir, name: str, parse: Any) -> Any:
    """``parse(json)`` of a side file; a malformed one is a :class:`ModelDirError` naming it."""
    try:
        return parse(model_dir.json_file(name))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelDirError(f"{model_dir.path / name} is not a valid {name} ({error!r}); re-export the model") from None
