"""Callbacks every task adds to its training run: the run's clock (wall time per epoch) and its learning rate."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class WallClock(Callback):
    """Logs ``epoch_seconds`` (the training epoch just finished) and ``elapsed_seconds`` (since fit started) once per
    epoch, so a run's log says how long each point of its learning curve took."""

    def __init__(self) -> None:
        self.started = self.epoch_started = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        pl_module.log("epoch_seconds", round(now - self.epoch_started, 2), on_epoch=True, sync_dist=True)
        pl_module.log("elapsed_seconds", round(now - self.started, 2), on_epoch=True, sync_dist=True)

    def state_dict(self) -> dict[str, Any]:
        return {}
