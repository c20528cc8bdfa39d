"""Predictors over model directories: ``Predictor.load(dir).predict(texts)``."""

from toolkit.predict.base import Predictor

__all__ = ["Predictor"]
