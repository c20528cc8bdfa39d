"""Language modelling: a thin LightningModule around the lm spec's network (``LMNet``).

Training reads the stream's windows in order and carries the recurrent state from one window to the next,
detached (truncated back-propagation through time); the state restarts at each epoch. Logged: ``train_loss``
(cross-entropy per token, nats) and ``train_ppl``; per validation, ``val_loss`` and ``val_ppl`` over every dev
token, also carried across windows: the sums are synced over DDP processes, so the figure is the corpus
perplexity. ``val_ppl`` (lower is better) picks the exported checkpoint. Gradient clipping is the trainer's
``gradient_clip_val``.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import SumMetric

from toolkit.config import config_from_dict, config_to_dict
from toolkit.data.lm import LMDataInfo
from toolkit.data.lm_text import direction_checked
from toolkit.metrics import perplexity_scores
from toolkit.nn.lm import LMNetConfig
from toolkit.specs.lm import LMConfig
from toolkit.tasks.base import OptimizerConfig, TaskModule
from toolkit.tasks.finetune import InitFrom


class LMModule(TaskModule):
    """Trains a recurrent language model (cross-entropy over the next token, carried state).

    Args:
        network: architecture (embeddings, encoder, dropouts, tying).
        optimizer: algorithm, learning rate, schedule.
        data_info: vocabulary size and reading direction (:class:`~toolkit.data.lm.LMDataInfo`) from the
            DataModule (the CLI links it), or its dict form.
    """

    task = "lm"
    monitor = "val_ppl"
    monitor_mode = "min"

    def __init__(self, network: LMNetConfig | None = None, optimizer: OptimizerConfig | None = None,
                 data_info: LMDataInfo | dict | None = None, init_from: InitFrom | None = None) -> None:
        network = config_from_dict(LMNetConfig, network or LMNetConfig(), "model.network")
        optimizer = config_from_dict(OptimizerConfig, optimizer or OptimizerConfig(), "model.optimizer")
        super().__init__(optimizer, init_from)
        info = LMDataInfo.of(data_info)
        # Plain dicts only (data_info too), so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters({"network": config_to_dict(network), "optimizer": config_to_dict(optimizer),
                                   "data_info": info.to_dict(), **self.pretraining_hparams(),
                                   **self.class_path_hparam()})
        self.network_config = network
        self.model_config = LMConfig(network, info.vocab_size, direction_checked(info.direction))
        self.net = self.spec.build_net(self.model_config, None)
        self._state: tuple[torch.Tensor, ...] | None = None
        self._eval_state: tuple[torch.Tensor, ...] | None = None
        self.eval_nll, self.eval_tokens = SumMetric(), SumMetric()

    def _nll(self, batch: dict, state: tuple[torch.Tensor, ...] | None, reduction: str
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output = self.net(batch["input"], state)
        losses = self.net.nll(output.hidden, batch["target"])
        loss = losses.mean() if reduction == "mean" else losses.sum()
        return loss, tuple(part.detach() for part in output.state)

    def on_train_epoch_start(self) -> None:
        self._state = None

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss, self._state = self._nll(batch, self._state, "mean")
        size = batch["input"].numel()
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        self.log("train_ppl", math.exp(min(float(loss.detach()), 50.0)), batch_size=size)
        return loss

    def _start_eval(self) -> None:
        self._eval_state = None
        self.eval_nll.reset()
        self.eval_tokens.reset()

    def _evaluate(self, batch: dict) -> None:
        nll, self._eval_state = self._nll(batch, self._eval_state, "sum")
        self.eval_nll.update(nll)
        self.eval_tokens.update(batch["target"].numel())

    def _finish_eval(self, prefix: str) -> None:
        tokens = int(self.eval_tokens.compute())  # both sums are synced over DDP processes
        if tokens:
            scores = perplexity_scores(float(self.eval_nll.compute()), tokens)
            self.log(f"{prefix}loss", scores["cross_entropy_nats"], sync_dist=True)
            self.log(f"{prefix}ppl", scores["perplexity"], prog_bar=True, sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val_")

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def test_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch)

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test_")
