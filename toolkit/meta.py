"""meta.json: the layout every model directory shares (format 2), and the migrations from older formats.

The artifact layer owns it (`toolkit/artifact.py` reads and writes it; nothing here imports a spec): the specs type its
`model_config` and `tokenizer` sections, this module only their envelope.

Format 2 (what every ``bilstm fit`` writes)::

    format_version  2
    task            a task of the task table (toolkit/registry.py): "classify", "tag", "translate", "lm"…
    toolkit_version, created
    model_config    everything needed to rebuild the network; typed by the task's spec
    labels          the label (or tag) set in output order, or null
    tokenizer       how text becomes model input; typed by the task's spec
    files           every other file: {name: {"sha256", "bytes"}}; a loader reads only files listed here
    training        data fingerprint (files, sha256, counts), metrics, epochs, steps, best checkpoint, fit time
    provenance      what reproduces the run: seed, the full resolved config, library versions, Python,
                    platform, hardware, the code's git commit when known
    init_from       models whose weights this one started from: [{"path", "sha256", ...}] (empty: none)
    backends        files of other runtimes: {"onnx": {"file": "model.onnx", ...}} (empty: torch only)

The last three sections are part of the format from version 2 on, empty where unused, so adding pretrained
starts, ONNX files or a fuller record does not need another format bump. Format 1 had none of them and kept the
tag scheme twice (``tokenizer.input_scheme``/``train_scheme`` beside ``model_config.input_scheme``/``scheme``);
:data:`MIGRATIONS` upgrades it on read. A format newer than this toolkit's is refused with what to do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from toolkit.errors import ModelDirError
from toolkit.version import __version__

FORMAT_VERSION = 2


@dataclass
class ModelMeta:
    """A parsed meta.json (format 2). ``model_config`` and ``tokenizer`` stay plain: the task's spec types them."""

    task: str
    model_config: dict[str, Any]
    labels: list[str] | None = None
    tokenizer: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    init_from: list[dict[str, Any]] = field(default_factory=list)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    toolkit_version: str = __version__
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        """The JSON object written as meta.json (keys in a readable order)."""
        data = asdict(self)
        order = ["format_version", "task", "toolkit_version", "created", "model_config", "labels", "tokenizer",
                 "training", "provenance", "init_from", "backends", "files"]
        return {key: data[key] for key in order}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> ModelMeta:
        """Parse a meta.json object of the current format (after :func:`upgrade`)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelDirError(f"{where}: unknown entries {unknown}; it was written by a newer or another tool")
        required = ("task", "model_config", "files")
        missing = [key for key in required if key not in data]
        if missing:
            raise ModelDirError(f"{where} is missing the {missing[0]!r} entry; re-export the model")
        kinds = {"model_config": dict, "tokenizer": (dict, type(None)), "training": dict, "provenance": dict,
                 "init_from": list, "backends": dict, "labels": (list, type(None))}
        for key, kind in kinds.items():
            if key in data and not isinstance(data[key], kind):
                raise ModelDirError(f"{where}: {key!r} has the wrong type ({type(data[key]).__name__}); "
                                    "re-export the model")
        values = {**data, "tokenizer": data.get("tokenizer") or {}}
        return cls(**values)


def _v1_to_v2(meta: dict[str, Any]) -> dict[str, Any]:
    """Format 1 → 2: the tag scheme only in model_config; empty provenance, init_from and backends."""
    upgraded = copy.deepcopy(meta)
    if upgraded.get("task") == "tag" and isinstance(upgraded.get("tokenizer"), dict):
        for key in ("input_scheme", "train_scheme"):
            upgraded["tokenizer"].pop(key, None)
    upgraded.setdefault("training", {})
    upgraded.update(provenance={}, init_from=[], backends={}, format_version=2)
    return upgraded


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}
"""Upgrades keyed by the format they upgrade *from*; each returns the meta of the next format."""


def upgrade(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """Bring a meta.json object of any readable format to :data:`FORMAT_VERSION`.

    Raises:
        ModelDirError: no integer format_version, a format newer than this toolkit reads, or one with no upgrade.
    """
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelDirError(f"{where} has no integer format_version; it was not written by bilstm-toolkit")
    if version > FORMAT_VERSION:
        raise ModelDirError(f"{where} has model format {version}, newer than this toolkit ({__version__}) reads "
                            f"(format {FORMAT_VERSION}); upgrade bilstm-toolkit to load it")
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise ModelDirError(f"{where} has model format {version}, which cannot be upgraded to {FORMAT_VERSION}")
        meta = MIGRATIONS[version](meta)
        version = meta["format_version"]
    return meta
