"""Text classification: a thin LightningModule around the classify spec's network (``ClassifyNet``)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from toolkit.config import config_from_dict, config_to_dict
from toolkit.data.classify import ClassifyDataInfo
from toolkit.metrics import classification_metrics
from toolkit.nn.classifier import ClassifyNetConfig
from toolkit.specs.classify import ClassifyConfig
from toolkit.tasks.base import OptimizerConfig, TaskModule
from toolkit.tasks.finetune import FineTuneConfig, InitFrom


class ClassifyModule(TaskModule):
    """Trains a recurrent text classifier (cross-entropy, AdamW, accuracy and macro-F1).

    Args:
        network: architecture (embeddings, encoder, pooling).
        optimizer: learning rate, weight decay and schedule.
        data_info: vocabulary size and labels (:class:`~toolkit.data.classify.ClassifyDataInfo`) from the DataModule
            (the CLI links it), or its dict form.
        label_smoothing: cross-entropy label smoothing.
        init_from: language models whose embeddings and encoder layers the network starts from.
        finetune: discriminative learning rates and gradual unfreezing.
    """

    task = "classify"
    monitor = "val_acc"
    network_type: ClassVar[type] = ClassifyNetConfig
    """The network's config dataclass (a task built on this module may have another network)."""
    config_type: ClassVar[type] = ClassifyConfig
    """meta.json ``model_config`` of the task (its spec's ``config_type``)."""

    def __init__(
        self,
        network: ClassifyNetConfig | None = None,
        optimizer: OptimizerConfig | None = None,
        data_info: ClassifyDataInfo | dict | None = None,
        label_smoothing: float = 0.0,
        init_from: InitFrom | None = None,
        finetune: FineTuneConfig | None = None,
    ) -> None:
        network = config_from_dict(self.network_type, network or self.network_type(), "model.network")
        optimizer = config_from_dict(OptimizerConfig, optimizer or OptimizerConfig(), "model.optimizer")
        super().__init__(optimizer, init_from, finetune)
        info = ClassifyDataInfo.of(data_info)
        # Plain dicts only (data_info too), so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters({"network": config_to_dict(network), "optimizer": config_to_dict(optimizer),
                                   "data_info": info.to_dict(), "label_smoothing": label_smoothing,
                                   **self.pretraining_hparams(), **self.class_path_hparam()})
        self.network_config = network
        self.labels = list(info.labels)
        self.model_config = self.config_type(network, info.vocab_size, len(self.labels))
        self.net = self.spec.build_net(self.model_config, self.labels)
        # Running accuracy over each training epoch (dropout on), as Keras reports it.
        self.train_acc = MulticlassAccuracy(len(self.labels), average="micro")
        self.val_metrics = classification_metrics(len(self.labels), prefix="val_")
        self.test_metrics = classification_metrics(len(self.labels), prefix="test_")
        # Example-weighted mean loss over the whole dev set; synced like the metrics, so exact under DDP.
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``ids [B, T]``, ``lengths [B]`` → logits ``[B, num_labels]``."""
        return self.net(ids, lengths)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        logits = self(batch["ids"], batch["lengths"])
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.hparams.label_smoothing)
        self.train_acc(logits, batch["labels"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(batch["labels"]))
        return loss

    def _evaluate(self, batch: dict, metrics: MetricCollection, loss_metric: MeanMetric, prefix: str) -> None:
        """Accumulate one dev/test batch; the metrics' states are summed over DDP ranks at the epoch's end."""
        logits = self(batch["ids"], batch["lengths"])
        size = len(batch["labels"])
        loss_metric.update(F.cross_entropy(logits, batch["labels"]), weight=size)
        metrics.update(logits, batch["labels"])
        self.log(f"{prefix}loss", loss_metric, batch_size=size)
        self.log_dict(metrics, prog_bar=True, batch_size=size)

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch, self.val_metrics, self.val_loss, "val_")

    def test_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch, self.test_metrics, self.test_loss, "test_")
