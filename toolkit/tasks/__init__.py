"""One LightningModule per task (imports Lightning; the Predictor never imports this package)."""

from toolkit.tasks.base import OptimizerConfig, TaskModule
from toolkit.tasks.classify import TextClassifier

TASKS: dict[str, type[TaskModule]] = {"classify": TextClassifier}

__all__ = ["TASKS", "OptimizerConfig", "TaskModule", "TextClassifier"]
