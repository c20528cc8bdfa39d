"""What every task's spec does: type meta.json's task sections, name the side files, build and load the network.

A spec is the only place that knows a task's model-directory format::

    SPEC.save(path, config, data_export, state_dict, training=..., provenance=...)   # bilstm fit's export
    opened = SPEC.open(path)     # checksums, typed sections, side files read (vocabularies…) and sizes checked
    net = SPEC.load_net(opened.model_dir, opened.config)                            # weights checked strictly

Subclasses set ``task``, ``config_type`` (the dataclass of meta.json ``model_config``) and ``tokenizer_type``
(of meta.json ``tokenizer``), and implement :meth:`side_files`, :meth:`read_side_files` (vocabularies, subword
tokenizers: a bad file is a :class:`ModelDirError`) and :meth:`build_net`.

Ensembles (`bilstm ensemble`, ``toolkit/ensemble.py``) are ordinary directories of their members' task, read here
for every task alike: ``model_config`` is ``{"ensemble": [member model_config, ...]}``, the weights are the
members' under ``members.<i>.``, and the side files and tokenizer settings are the members' shared ones.
:meth:`TaskSpec.parse` gives the config the predictor reads (:meth:`TaskSpec.ensemble_config`: the one per-task
hook, which also says what members must share), and :meth:`TaskSpec.load_net` builds each member with
:meth:`build_net` and joins them with the network the task table names (``TaskEntry.ensemble``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from torch import nn

from toolkit.artifact import ModelDir, load_model_dir, save_model_dir
from toolkit.config import config_from_dict, config_to_dict
from toolkit.data.export import DataExport
from toolkit.errors import ConfigError, ModelDirError
from toolkit.meta import ModelMeta
from toolkit.registry import TASKS, load_piece

ConfigT = TypeVar("ConfigT")
TokenizerT = TypeVar("TokenizerT")

ENSEMBLE_KEY = "ensemble"
"""The one key of an ensemble's meta.json ``model_config``: the list of its members' ``model_config``."""


@dataclass(frozen=True)
class EnsembleConfig:
    """What :meth:`TaskSpec.save` writes as an ensemble's ``model_config``: its members' typed configs, in order."""

    members: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        return {ENSEMBLE_KEY: [config_to_dict(member) for member in self.members]}


def is_ensemble(meta: ModelMeta) -> bool:
    """Whether a model directory's meta.json describes an ensemble (`bilstm ensemble`)."""
    return set(meta.model_config) == {ENSEMBLE_KEY}


def differs(name: str, first: int, other: int, value: Any, other_value: Any) -> ConfigError:
    """The one line for two ensemble members (1-based positions) that disagree on ``name``."""
    return ConfigError(f"members {first} and {other} have different {name}: {value!r} vs {other_value!r}")


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
        """meta.json's ``model_config`` and ``tokenizer`` as the task's dataclasses (an ensemble's
        ``model_config``: the config its members share, :meth:`ensemble_config`)."""
        try:
            members = self._member_configs(meta)
            config = self.ensemble_config(members) if is_ensemble(meta) else members[0]
            tokenizer = config_from_dict(self.tokenizer_type, meta.tokenizer, "meta.json tokenizer")
            if hasattr(tokenizer, "validate"):
                tokenizer.validate()
        except (ConfigError, TypeError, ValueError) as error:
            raise ModelDirError(f"{where}: meta.json does not describe a valid {self.task!r} model ({error}); "
                                "re-export the model") from None
        return config, tokenizer

    def _member_configs(self, meta: ModelMeta) -> list[ConfigT]:
        """The typed, validated ``model_config`` of each network the directory holds (one, or an ensemble's)."""
        if not is_ensemble(meta):
            sections = [("meta.json model_config", meta.model_config)]
        else:
            listed = meta.model_config[ENSEMBLE_KEY]
            if not isinstance(listed, list) or not listed:
                raise ConfigError(f"model_config.{ENSEMBLE_KEY} must be a non-empty list of member model_configs")
            sections = [(f"meta.json model_config.{ENSEMBLE_KEY}[{index}]", section)
                        for index, section in enumerate(listed)]
        configs = []
        for where, section in sections:
            config = config_from_dict(self.config_type, section, where)
            if hasattr(config, "validate"):
                config.validate()
            configs.append(config)
        return configs

    def member_configs(self, meta: ModelMeta, where: str | Path) -> list[ConfigT]:
        """Each network's typed ``model_config``: ``[config]`` for one model, the members' for an ensemble (what a
        check of every network, such as ONNX export's, reads)."""
        try:
            return self._member_configs(meta)
        except (ConfigError, TypeError, ValueError) as error:
            raise ModelDirError(f"{where}: meta.json does not describe a valid {self.task!r} model ({error}); "
                                "re-export the model") from None

    # ---- ensembles -------------------------------------------------------------------------------------------

    def ensemble_config(self, members: Sequence[ConfigT]) -> ConfigT:
        """The config an ensemble's predictor reads, from its members' (the per-task hook; `bilstm ensemble`).

        Members must agree on everything but ``network`` (sizes from the data, schemes, directions…), since one
        featuriser and one set of side files serve them all; the result is the first member's config. A task
        overrides this where its predictor reads a network setting (the tagger: its character features).

        Raises:
            ConfigError: naming the field and the members (1-based) that differ.
        """
        first = members[0]
        names = [item.name for item in dataclasses.fields(first) if item.name != "network"] \
            if dataclasses.is_dataclass(first) else []
        for position, member in enumerate(members[1:], start=2):
            for name in names:
                if getattr(member, name) != getattr(first, name):
                    raise differs(f"model_config.{name}", 1, position, getattr(first, name), getattr(member, name))
        return first

    def ensemble_network(self) -> Any:
        """The class that joins this task's networks into one (the task table's ``ensemble`` field).

        Raises:
            ConfigError: the task has none (its entry's ``ensemble`` is None).
        """
        entry = TASKS[self.task]
        if entry.ensemble is None:
            able = ", ".join(task for task, other in TASKS.items() if other.ensemble is not None)
            raise ConfigError(f"{self.task!r} models cannot be ensembled (its task table entry names no ensemble "
                              f"network); `bilstm ensemble` covers {able} models")
        return load_piece(entry.ensemble)

    # ---- writing ---------------------------------------------------------------------------------------------

    def save(self, path: str | Path, config: ConfigT | EnsembleConfig, data: DataExport, state_dict: dict[str, Any],
             *, training: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
             init_from: Iterable[dict[str, Any]] = ()) -> Path:
        """Write a model directory for ``config``'s network trained on ``data`` (atomically); an
        :class:`EnsembleConfig` writes an ensemble of its members' networks."""
        model_config = config.to_dict() if isinstance(config, EnsembleConfig) else config_to_dict(config)
        tokenizer = config_from_dict(self.tokenizer_type, data.tokenizer, "the data module's tokenizer settings")
        missing = sorted(set(self.side_files(tokenizer)) - set(data.json_files) - set(data.extra_files))
        if missing:
            raise ValueError(f"a {self.task!r} model directory needs {missing}, which the data module did not give")
        meta = ModelMeta(task=self.task, model_config=model_config, labels=data.labels,
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
        """The network with the directory's weights, loaded strictly (mismatches named). An ensemble's: each
        member built from its own config (``options`` go to each), joined by :meth:`ensemble_network`."""
        labels = model_dir.meta.labels
        if is_ensemble(model_dir.meta):
            members = self.member_configs(model_dir.meta, model_dir.path)
            net = self.ensemble_network()([self.build_net(member, labels, **options) for member in members])
        else:
            net = self.build_net(config, labels, **options)
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
