"""One LightningModule per task (imports Lightning; the Predictor never imports this package)."""

from __future__ import annotations

import importlib
from typing import Any

from toolkit.tasks.base import OptimizerConfig, TaskModule

# task name → "module:Class"; imported on first use so one task's dependencies never load another's.
TASKS: dict[str, str] = {
    "classify": "toolkit.tasks.classify:TextClassifier",
    "tag": "toolkit.tasks.tag:SequenceTagger",
    "translate": "toolkit.tasks.translate:Translator",
}


def task_class(task: str) -> type[TaskModule]:
    """The LightningModule class of a task name."""
    module, name = TASKS[task].split(":")
    return getattr(importlib.import_module(module), name)


def __getattr__(name: str) -> Any:
    # `toolkit.tasks.TextClassifier` etc. (the class_path form configs use).
    for target in TASKS.values():
        module, class_name = target.split(":")
        if class_name == name:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'toolkit.tasks' has no attribute {name!r}")


__all__ = ["TASKS", "OptimizerConfig", "TaskModule", "task_class"]
