"""`bilstm ensemble DIR1 DIR2 … --out DIR`: one model directory whose network averages several trained models.

The result is an ordinary directory of the members' task, written through the task's spec like `bilstm fit`'s
export (atomically; safetensors and JSON only), so everything that reads a model directory reads it unchanged:
``Predictor.load``, `bilstm evaluate`/`label`/`serve`/`report`, the spaCy components and, where each member
exports, `bilstm export --onnx`. What the average is, per task, is the network the task table names
(``TaskEntry.ensemble``; ``toolkit/nn/ensemble.py``): class probabilities, a tagger's emission and transition
scores (one CRF: a product of experts), a language model's next-token distributions.

One featuriser serves every member, so members must share what it and the predictor read: the task, the label
set in the same order, the tokenizer settings of meta.json, byte-identical side files (vocabularies, a
transformer's files…) and the config fields outside ``network`` (checked by the spec's ``ensemble_config``).
Networks may differ (sizes, cells, seeds). Members are checked on their meta.json first, before any weights are
read, and then loaded as models. meta.json records each member (path, task, sha256 of its weights and of its
meta.json) in ``init_from``.

An "ensemble" of one model is allowed: it predicts exactly what the model does (a check of the mechanism). An
ensemble cannot be a member: flattening it would weight its members differently from how it averages them, so
it is refused (give its members instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import ConfigError


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _backend_files(meta: Any) -> set[str]:
    """The files of other runtimes (``model.onnx``…) that meta.json's ``backends`` names: the member's own, not
    side files the ensemble shares."""
    names: set[str] = set()
    for entry in meta.backends.values():
        if isinstance(entry, dict):
            names |= {entry["file"]} if isinstance(entry.get("file"), str) else set()
            names |= {name for name in (entry.get("files") or {}).values() if isinstance(name, str)}
    return names


def side_files(meta: Any) -> dict[str, str]:
    """``{name: sha256}`` of every file a member shares with the others: all it lists but weights and backends."""
    from toolkit.artifact import WEIGHTS_FILE

    skipped = {WEIGHTS_FILE} | _backend_files(meta)
    return {name: entry["sha256"] for name, entry in sorted(meta.files.items()) if name not in skipped}


def _check_shared(paths: Sequence[Path], metas: list[Any]) -> None:
    """Refuse members that cannot share one featuriser: ensembles, tasks, labels, side files (meta.json only)."""
    from toolkit.specs.base import differs, is_ensemble

    for position, (path, meta) in enumerate(zip(paths, metas, strict=True), start=1):
        if is_ensemble(meta):
            raise ConfigError(f"member {position} ({path}) is itself an ensemble: give its members instead (nested "
                              "ensembles would weight their members unevenly)")
    first = metas[0]
    for position, meta in enumerate(metas[1:], start=2):
        if meta.task != first.task:
            raise differs("tasks", 1, position, first.task, meta.task)
        if meta.labels != first.labels:
            raise differs("labels (an ensemble averages label by label: same set, same order)", 1, position,
                          first.labels, meta.labels)
        mine, theirs = side_files(first), side_files(meta)
        if set(mine) != set(theirs):
            raise differs("side files", 1, position, sorted(mine), sorted(theirs))
        for name in mine:
            if mine[name] != theirs[name]:
                raise differs(f"{name} (one featuriser reads it for all: train members on the same data and "
                              "vocabulary)", 1, position, f"sha256 {mine[name][:12]}…", f"sha256 {theirs[name][:12]}…")


def _check_tokenizers(tokenizers: list[Any]) -> None:
    from toolkit.config import config_to_dict
    from toolkit.specs.base import differs

    first = config_to_dict(tokenizers[0])
    for position, tokenizer in enumerate(tokenizers[1:], start=2):
        other = config_to_dict(tokenizer)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise differs(f"tokenizer settings (meta.json tokenizer.{key})", 1, position, first.get(key),
                              other.get(key))


def build_ensemble(members: Sequence[str | Path], out: str | Path, force: bool = False) -> Path:
    """Write the ensemble of ``members`` (model directories of one task) to ``out``; returns ``out``.

    Raises:
        ConfigError: members that cannot be averaged (naming what differs and between which members), a task
            without an ensemble network, or ``out`` being a member or existing without ``force``.
        ModelDirError: a member is missing, corrupt or does not load.
    """
    from toolkit.artifact import META_FILE, WEIGHTS_FILE, read_meta
    from toolkit.data.export import DataExport
    from toolkit.predict import Predictor
    from toolkit.provenance import provenance
    from toolkit.specs import spec_for
    from toolkit.specs.base import EnsembleConfig

    paths = [Path(member) for member in members]
    target = Path(out)
    if not paths:
        raise ConfigError("an ensemble needs at least one member model directory")
    for position, path in enumerate(paths, start=1):
        if path.exists() and target.exists() and path.resolve() == target.resolve():
            raise ConfigError(f"--out {target} is member {position}; write the ensemble to another directory")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass --force to replace it (or choose another --out)")
    metas = [read_meta(path) for path in paths]
    _check_shared(paths, metas)
    spec = spec_for(metas[0].task)
    network = spec.ensemble_network()
    parsed = [spec.parse(meta, path) for path, meta in zip(paths, metas, strict=True)]
    _check_tokenizers([tokenizer for _, tokenizer in parsed])
    configs = [config for config, _ in parsed]
    spec.ensemble_config(configs)  # the config fields the predictor reads must agree
    # Each member loaded as a model (checksums, side files, weights into its network): the ensemble's weights are
    # then these networks' own, under members.<i>., and load into the network the spec rebuilds.
    nets = [Predictor.load(path, device="cpu").net for path in paths]
    state_dict = network(nets).state_dict()
    records = [m.training.get("data", {}) for m in metas]
    data = DataExport(labels=metas[0].labels, tokenizer=metas[0].tokenizer,
                      extra_files={name: paths[0] / name for name in side_files(metas[0])},
                      record=records[0] if all(record == records[0] for record in records) else {})
    init_from = [{"path": str(path.resolve()), "task": meta.task, "role": "ensemble member",
                  "sha256": meta.files[WEIGHTS_FILE]["sha256"], "meta_sha256": _sha256(path / META_FILE),
                  "metrics": meta.training.get("metrics", {})} for path, meta in zip(paths, metas, strict=True)]
    record = provenance({"command": "bilstm ensemble", "members": [str(path) for path in paths], "out": str(target)})
    return spec.save(target, EnsembleConfig(tuple(configs)), data, state_dict, init_from=init_from,
                     training={"ensemble": {"members": len(paths), "network": network.__name__}},
                     provenance=record)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("members", nargs="+", help="model directories of one task, trained on the same vocabulary "
                        "and labels (one member: an ensemble that predicts what it does)")
    parser.add_argument("--out", required=True, help="the ensemble's model directory")
    parser.add_argument("--force", action="store_true", help="replace --out if it is an existing model directory")


def run(args: argparse.Namespace) -> int:
    path = build_ensemble(args.members, args.out, force=args.force)
    if len(args.members) == 1:
        print("bilstm: note: an ensemble of one model predicts exactly what that model does", file=sys.stderr)
    print(json.dumps({"model_dir": str(path), "members": [str(member) for member in args.members]}))
    return 0
