"""What every task's LightningModule shares: optimiser + LR schedule, checkpointing, export payload."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from toolkit.specs import spec_for
from toolkit.specs.base import TaskSpec

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class OptimizerConfig:
    """AdamW with a warm-up then decay schedule (stepped every optimiser step)."""

    lr: float = 2e-3
    """Peak learning rate."""
    weight_decay: float = 0.01
    """Decoupled weight decay (not applied to biases, norms and embeddings)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam moment decay rates."""
    schedule: str = "linear"
    """After warm-up: ``constant``, ``linear`` decay to 0 or ``cosine`` decay to 0."""
    warmup_fraction: float = 0.05
    """Share of all training steps spent warming up linearly from 0."""


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimiser ``step`` (0-based) of ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class TaskModule(pl.LightningModule):
    """Base class: subclasses set ``task``, ``monitor`` and ``model_config``, and build ``self.net`` with the spec."""

    task: str = ""
    monitor: str = ""  # validation metric that picks the best checkpoint (higher is better)

    def __init__(self, optimizer: OptimizerConfig) -> None:
        super().__init__()
        if optimizer.schedule not in SCHEDULES:
            raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {optimizer.schedule!r}")
        self.optimizer_config = optimizer

    def setup(self, stage: str) -> None:
        """Initialise the word embeddings from pretrained vectors when the network config names them.

        The vectors need the vocabulary, which only the data module has; the data layer reads them
        (:mod:`toolkit.data.vectors`) and the network takes them as tensors. On resume the checkpoint's weights
        are restored after this and win.
        """
        config = getattr(self, "network_config", None)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if stage == "fit" and getattr(config, "pretrained", None) and datamodule is not None:
            from toolkit.data.vectors import load_pretrained

            vectors, found, stats = load_pretrained(config.pretrained, datamodule.vocabulary_tokens(),
                                                    self.net.embed.dim)
            self.net.embed.initialise_from(vectors, found, freeze=config.freeze_embeddings)
            log.info("%s", stats)
            print(stats)

    @property
    def spec(self) -> TaskSpec:
        """The task's model-directory format (what export writes and the Predictor reads)."""
        return spec_for(self.task)

    @classmethod
    def class_path_hparam(cls) -> dict[str, str]:
        """``_class_path`` for the saved hparams: LightningCLI reads it to rebuild the model on ``--ckpt_path``."""
        return {"_class_path": f"{cls.__module__}.{cls.__qualname__}"}

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            (no_decay if parameter.ndim < 2 or "embed" in name else decay).append(parameter)
        config = self.optimizer_config
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=tuple(config.betas),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(total * config.warmup_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, warmup, config.schedule)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self):
        # Keep the best checkpoint by the task's validation metric (plus the last one, for resuming);
        # nothing when the trainer runs with checkpointing switched off (benchmarks).
        if not self.trainer.checkpoint_callbacks:
            return []
        return [ModelCheckpoint(monitor=self.monitor, mode="max", save_last=True,
                                filename="best-{epoch}-{step}", auto_insert_metric_name=False)]

    model_config: Any
    """The typed meta.json ``model_config`` the network was built from (the spec writes it on export)."""
