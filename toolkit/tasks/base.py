"""What every task's LightningModule shares: optimiser + LR schedule, checkpointing, export payload."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from toolkit.config import config_from_dict, config_to_dict
from toolkit.specs import spec_for
from toolkit.specs.base import TaskSpec
from toolkit.tasks.callbacks import WallClock

log = logging.getLogger(__name__)

ALGORITHMS = ("adamw", "sgd")
SCHEDULES = ("constant", "linear", "cosine", "slanted_triangular", "plateau")


@dataclass
class OptimizerConfig:
    """AdamW (or SGD) with a warm-up then decay schedule (stepped every optimiser step), or a plateau schedule."""

    algorithm: str = "adamw"
    """``adamw``, or ``sgd`` (with ``momentum``; the classic recipe for recurrent language models)."""
    lr: float = 2e-3
    """Peak learning rate."""
    weight_decay: float = 0.01
    """Weight decay (decoupled for AdamW; L2 for SGD), not applied to biases, norms and embeddings."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam moment decay rates."""
    momentum: float = 0.0
    """SGD momentum."""
    schedule: str = "linear"
    """After warm-up: ``constant``, ``linear`` decay to 0, ``cosine`` decay to 0; ``slanted_triangular``
    (ULMFiT: a short linear rise over ``warmup_fraction`` of the steps from ``lr / stlr_ratio``, then a long linear
    fall back to it); or ``plateau``: multiply the rate by ``plateau_factor`` after each validation that does not
    improve the task's metric (no warm-up)."""
    warmup_fraction: float = 0.05
    """Share of all training steps spent warming up linearly from 0."""
    plateau_factor: float = 0.25
    """``plateau``: the factor applied when the validation metric stops improving."""
    plateau_patience: int = 0
    """``plateau``: validations without improvement tolerated before decaying."""
    stlr_ratio: float = 32.0
    """``slanted_triangular``: how much smaller the lowest rate is than the peak (Howard & Ruder: 32)."""

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"optimizer.algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {self.schedule!r}")


def lr_factor(step: int, total: int, warmup: int, schedule: str, ratio: float = 32.0) -> float:
    """Multiplier of the peak learning rate at optimiser ``step`` (0-based) of ``total``."""
    if schedule == "slanted_triangular":
        rise = max(1, warmup)
        if step < rise:
            return (1 + step / rise * (ratio - 1)) / ratio
        fall = min(1.0, (step - rise) / max(1, total - rise))
        return (1 + (1 - fall) * (ratio - 1)) / ratio
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
    monitor: str = ""  # validation metric that picks the best checkpoint
    monitor_mode: str = "max"  # whether higher ("max") or lower ("min": perplexity) is better

    def __init__(self, optimizer: OptimizerConfig, init_from: Any = None, finetune: Any = None) -> None:
        from toolkit.tasks.finetune import FineTuneConfig, InitFrom

        super().__init__()
        optimizer.validate()
        self.optimizer_config = optimizer
        self.init_from = None if init_from is None else config_from_dict(InitFrom, init_from, "model.init_from")
        self.finetune = None if finetune is None else config_from_dict(FineTuneConfig, finetune, "model.finetune")
        if self.finetune is not None:
            self.finetune.validate()

    def pretraining_hparams(self) -> dict[str, Any]:
        """``init_from``/``finetune`` as plain dicts for the checkpoint (only when set: older ones lack them)."""
        return {name: config_to_dict(value) for name, value in
                (("init_from", self.init_from), ("finetune", self.finetune)) if value is not None}

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
        init = getattr(self, "init_from", None)
        if stage == "fit" and init is not None and (init.forward or init.backward) and datamodule is not None:
            from toolkit.tasks.finetune import initialise_from_lms

            self.init_from_records = [*self.init_from_records, *initialise_from_lms(
                self.net, config.encoder, init, datamodule.vocabulary_tokens())]

    @property
    def spec(self) -> TaskSpec:
        """The task's model-directory format (what export writes and the Predictor reads)."""
        return spec_for(self.task)

    @classmethod
    def class_path_hparam(cls) -> dict[str, str]:
        """``_class_path`` for the saved hparams: LightningCLI reads it to rebuild the model on ``--ckpt_path``."""
        return {"_class_path": f"{cls.__module__}.{cls.__qualname__}"}

    def configure_optimizers(self):
        from toolkit.tasks.finetune import optimizer_groups

        config = self.optimizer_config
        finetune = getattr(self, "finetune", None)
        groups = optimizer_groups(self.net, config.lr, config.weight_decay,
                                  finetune.layer_lr_decay if finetune is not None else 1.0)
        if config.algorithm == "sgd":
            optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
        else:
            optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))
        if config.schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=self.monitor_mode, factor=config.plateau_factor, patience=config.plateau_patience)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor,
                                                              "interval": "epoch", "strict": False}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(total * config.warmup_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, warmup, config.schedule, config.stlr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self):
        # The wall time of each epoch, and (with a logger) the learning rate of each step, go into the run's log;
        # the best checkpoint by the task's validation metric is kept (plus the last one, for resuming), unless
        # the trainer runs with checkpointing switched off (benchmarks).
        callbacks: list = [WallClock()]
        finetune = getattr(self, "finetune", None)
        if finetune is not None and finetune.unfreeze == "gradual":
            from toolkit.tasks.finetune import GradualUnfreezing

            callbacks.append(GradualUnfreezing(finetune.unfreeze_every))
        if self.trainer.loggers:
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if self.trainer.checkpoint_callbacks:
            callbacks.append(ModelCheckpoint(monitor=self.monitor, mode=self.monitor_mode, save_last=True,
                                             filename="best-{epoch}-{step}", auto_insert_metric_name=False))
        return callbacks

    model_config: Any
    """The typed meta.json ``model_config`` the network was built from (the spec writes it on export)."""
    init_from_records: list[dict[str, Any]] = []  # noqa: RUF012 - replaced, never mutated
    """meta.json ``init_from``: the models this one started from (path, sha256, what was copied)."""
