"""One LightningModule per task (imports Lightning; the Predictor never imports this package).

The modules are named in the task table (``toolkit.registry``) and imported on first use, so one task's
dependencies never load another's. ``toolkit.tasks.ClassifyModule`` etc. is the ``class_path`` form configs use.
"""

from __future__ import annotations

from typing import Any

from toolkit.registry import TASKS, load_piece
from toolkit.tasks.base import OptimizerConfig, TaskModule


def task_class(task: str) -> type[TaskModule]:
    """The LightningModule class of a task name."""
    return load_piece(TASKS[task].module)


def __getattr__(name: str) -> Any:
    for entry in TASKS.values():
        if entry.module.rpartition(":")[2] == name:
            return load_piece(entry.module)
    names = ", ".join(entry.module.rpartition(":")[2] for entry in TASKS.values())
    raise AttributeError(f"module 'toolkit.tasks' has no attribute {name!r}; the task modules are {names} "
                         "(renamed on 2026-12-06: see the README)")


__all__ = ["OptimizerConfig", "TaskModule", "task_class"]
