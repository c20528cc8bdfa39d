"""One spec per task: the task's model-directory format (meta.json layout, side files, network) in one place.

``spec_for("tag")`` gives the task's :class:`~toolkit.specs.base.TaskSpec`. Writing (``bilstm fit``'s export)
and reading (the Predictor, and through it the service, the spaCy components and the batch jobs) both go
through it, so the format of a task is defined once. No Lightning here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.errors import ModelDirError
from toolkit.registry import TASKS, load_piece

if TYPE_CHECKING:
    from toolkit.specs.base import TaskSpec


def spec_for(task: str) -> TaskSpec:
    """The spec of a task name (its module is imported on first use)."""
    if task not in TASKS:
        raise ModelDirError(f"unknown task {task!r}; this toolkit knows {list(TASKS)}")
    return load_piece(TASKS[task].spec)


__all__ = ["spec_for"]
