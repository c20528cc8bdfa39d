"""Rebuild (nested) config dataclasses from the plain dicts stored in meta.json and checkpoints."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from toolkit.errors import ConfigError

T = TypeVar("T")


def _dataclass_type(annotation: Any) -> type | None:
    """The dataclass inside ``X`` or ``X | None``, else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def config_from_dict(cls: type[T], data: dict | T, where: str = "config") -> T:
    """Build ``cls`` from ``data``; unknown keys are an error naming them (no silent drops)."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    values = {}
    for name, value in data.items():
        nested = _dataclass_type(hints[name])
        if nested and isinstance(value, dict):
            values[name] = config_from_dict(nested, value, f"{where}.{name}")
        else:
            values[name] = value
    return cls(**values)


def config_to_dict(config: Any) -> dict:
    """A dataclass (nested ones included) as plain JSON-able dicts."""
    return dataclasses.asdict(config)
