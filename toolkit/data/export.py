"""What a DataModule hands over: to the model directory (:class:`DataExport`, which the task's spec types and
writes) and to the LightningModule (:class:`DataInfo`, which the module builds its network from)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from toolkit.errors import ConfigError


@dataclass
class DataExport:
    """The data side of a model directory: label set, tokenizer settings, side files and the data fingerprint."""

    labels: list[str] | None
    """The label (or tag) set in output order; None for tasks without labels (translation)."""
    tokenizer: dict[str, Any]
    """How text becomes model input (meta.json ``tokenizer``); the spec checks it against its typed layout."""
    json_files: dict[str, Any] = field(default_factory=dict)
    """Side files written as JSON, e.g. ``{"vocab.json": {"tokens": [...]}}``."""
    extra_files: dict[str, Path] = field(default_factory=dict)
    """Existing files copied in, e.g. a transformer's ``config.json`` under ``transformer/``."""
    record: dict[str, Any] = field(default_factory=dict)
    """The training data's fingerprint for meta.json ``training.data``: files, sha256, example counts."""


class DataInfo:
    """Base of a task's ``data_info``: what its DataModule hands to its LightningModule (sizes, labels, settings).

    Each task has one frozen dataclass of it, beside its DataModule (``ClassifyDataInfo`` in
    :mod:`toolkit.data.classify`…). The CLI links the DataModule's ``data_info`` into the module's ``data_info``
    argument as it is. A checkpoint keeps :meth:`to_dict` instead (plain lists, dicts, strings and numbers):
    checkpoints are loaded with ``torch.load(weights_only=True)``, which unpickles no class of ours.
    :meth:`of` takes either form. Sequences are tuples, so a data_info is frozen all the way down.
    """

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, list):
                object.__setattr__(self, item.name, tuple(value))

    @classmethod
    def of(cls, value: Any, where: str = "model.data_info") -> Self:
        """``value`` as this dataclass: itself, or rebuilt from its dict form (:meth:`from_dict`).

        Raises:
            ConfigError: no value (the CLI links it from the data module), or one of another kind.
        """
        if isinstance(value, cls):
            return value
        if value is None:
            raise ConfigError(f"{where} ({', '.join(_names(cls))}) is required; the CLI links it from the data "
                              "module's data_info")
        if isinstance(value, Mapping):
            return cls.from_dict(value, where)
        raise ConfigError(f"{where}: expected a {cls.__name__} or its dict form, got {type(value).__name__} (the "
                          "data module of another task?)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model.data_info") -> Self:
        """Rebuild from :meth:`to_dict`'s form; every key must be a field, and every field without a default given.

        Raises:
            ConfigError: naming the unknown or missing keys and the ones this dataclass takes.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
        names = _names(cls)
        required = [item.name for item in fields(cls)
                    if item.init and item.default is MISSING and item.default_factory is MISSING]
        unknown = sorted(set(data) - set(names))
        missing = [name for name in required if name not in data]
        if unknown or missing:
            problems = "; ".join(part for part in (f"unknown key(s) {unknown}" if unknown else "",
                                                   f"missing key(s) {missing}" if missing else "") if part)
            raise ConfigError(f"{where}: {problems} for {cls.__name__} (its keys: {names}); it must come from "
                              "this task's data module (a checkpoint of another task or toolkit version?)")
        return cls(**cls._decode(dict(data), where))

    @classmethod
    def _decode(cls, values: dict[str, Any], where: str) -> dict[str, Any]:
        """Turn the dict form's nested values into the fields' types (subclasses with nested dataclasses)."""
        return values

    def to_dict(self) -> dict[str, Any]:
        """The plain form (JSON types only) that :meth:`from_dict` rebuilds: what a checkpoint stores."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


def _names(cls: type) -> list[str]:
    return [item.name for item in fields(cls) if item.init]


def _plain(value: Any) -> Any:
    """A field's value in JSON types; an object with ``to_dict()`` (a nested data_info, an opened model) gives that."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
