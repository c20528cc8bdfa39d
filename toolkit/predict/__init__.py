"""Predictors over model directories: ``Predictor.load(dir).predict(texts)``."""

from toolkit.predict.base import TaskPredictor
from toolkit.predict.loader import Predictor

__all__ = ["Predictor", "TaskPredictor"]
