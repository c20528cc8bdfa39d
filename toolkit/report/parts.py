"""What a task's part of `bilstm report model` is given and gives back (``TaskEntry.report``: ``build(context)``).

A module of its own so that the task parts (``toolkit/report/<task>.py``) and the report that calls them through the
task table (:mod:`toolkit.report.model`) import it, not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ReportContext:
    """What a task's report part is given."""

    predictor: Any
    """The loaded :class:`~toolkit.predict.base.TaskPredictor`."""
    data_file: Path
    metrics: dict[str, Any]
    """The predictor's ``evaluate`` output: the headline numbers."""
    options: dict[str, Any]
    """The options ``evaluate`` was called with (``text_field``, ``label_field``, ``batch_size`` if given)."""
    max_examples: int

    @property
    def batch_size(self) -> int | None:
        return self.options.get("batch_size")


@dataclass
class TaskReport:
    """A task's part of the report: HTML sections, figures by file name, and the numbers for report.json."""

    sections: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
