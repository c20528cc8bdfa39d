"""What a DataModule hands over for the model directory (the task's spec types and writes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
