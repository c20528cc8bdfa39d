"""Pretrain, then fine-tune: start from language models, and fine-tune the way ULMFiT found works.

* :class:`InitFrom` (``model.init_from``): the embeddings and encoder start from a forward and/or a backward LM
  model directory (:mod:`toolkit.nn.lm_transfer` does the copying, with the vocabularies matched by word);
* :class:`FineTuneConfig` (``model.finetune``): discriminative learning rates (each layer group below the top
  gets the rate divided by ``layer_lr_decay`` once more, Howard & Ruder 2018: 2.6) and gradual unfreezing (the
  top group trains alone first; one more group below joins every ``unfreeze_every`` epochs). The slanted
  triangular schedule is ``optimizer.schedule: slanted_triangular``; concat pooling is ``pooling: last+max+mean``.

Layer groups, bottom to top: the word features (embeddings, casing, characters), then each encoder layer, then
everything above the encoder (pooling, head, CRF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch import nn

from toolkit.data.lm import open_lm_directory
from toolkit.errors import ConfigError
from toolkit.specs.lm import PretrainedLM, reuse_language_model

UNFREEZE_MODES = ("all", "gradual")
BOTTOM_PREFIXES = ("embed.", "casing.", "chars.", "transformer.", "lm_forward.", "lm_backward.")
"""Parameters that feed the encoder: the lowest layer group."""


@dataclass
class InitFrom:
    """Language-model directories to start from (``bilstm fit`` of an ``lm`` config wrote them)."""

    forward: str | None = None
    """A forward LM: its embeddings, and its layers for the forward direction of the encoder."""
    backward: str | None = None
    """A backward LM: its layers for the backward direction (its embeddings where no forward LM is given)."""
    encoder: bool = True
    """Copy the encoder layers too (False: the word vectors only)."""


@dataclass
class FineTuneConfig:
    """How the layers of a (pretrained) network are trained."""

    layer_lr_decay: float = 1.0
    """Discriminative learning rates: group ``k`` below the top trains at ``lr / layer_lr_decay**k`` (1: off)."""
    unfreeze: str = "all"
    """``all`` (everything trains from the start) or ``gradual`` (the top group first, then one more below
    every ``unfreeze_every`` epochs)."""
    unfreeze_every: float = 0.25
    """Epochs (fractions allowed) between two unfreezing steps of ``unfreeze: gradual``."""

    def validate(self) -> None:
        if self.unfreeze not in UNFREEZE_MODES:
            raise ConfigError(f"model.finetune.unfreeze must be one of {UNFREEZE_MODES}, got {self.unfreeze!r}")
        if self.layer_lr_decay < 1.0:
            raise ConfigError(f"model.finetune.layer_lr_decay must be >= 1 (lower layers learn slower), "
                              f"got {self.layer_lr_decay}")
        if self.unfreeze_every <= 0:
            raise ConfigError(f"model.finetune.unfreeze_every must be > 0 epochs, got {self.unfreeze_every}")


def layer_groups(net: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The network's parameters in groups, bottom to top: ``features``, ``encoder.1`` … ``encoder.L``, ``top``."""
    encoder = getattr(net, "encoder", None)
    depth = len(encoder.layers) if encoder is not None else 0
    groups: list[tuple[str, list[nn.Parameter]]] = [("features", [])]
    groups += [(f"encoder.{k + 1}", []) for k in range(depth)]
    groups.append(("top", []))
    for name, parameter in net.named_parameters():
        if name.startswith(BOTTOM_PREFIXES):
            groups[0][1].append(parameter)
        elif name.startswith("encoder.layers."):
            groups[1 + int(name.split(".")[2])][1].append(parameter)
        else:
            groups[-1][1].append(parameter)
    return [group for group in groups if group[1]]


def optimizer_groups(net: nn.Module, lr: float, weight_decay: float, layer_lr_decay: float = 1.0
                     ) -> list[dict[str, Any]]:
    """AdamW/SGD parameter groups: per layer group (discriminative rates), weight decay only on matrices that are
    not embeddings. Parameters switched off for good (``requires_grad`` False now) are left out."""
    groups = []
    named = {id(parameter): name for name, parameter in net.named_parameters()}
    # Without discriminative rates every layer shares one rate: two groups in parameter order (as before issue 13),
    # so checkpoints of earlier runs still resume.
    layers = layer_groups(net) if layer_lr_decay != 1.0 else [("all", list(net.parameters()))]
    for below_top, (group, parameters) in enumerate(reversed(layers)):
        rate = lr / layer_lr_decay**below_top
        decay = [p for p in parameters if p.requires_grad and p.ndim >= 2 and "embed" not in named[id(p)]]
        plain = [p for p in parameters if p.requires_grad and not (p.ndim >= 2 and "embed" not in named[id(p)])]
        groups += [{"params": params, "weight_decay": wd, "lr": rate, "name": f"{group}{suffix}"}
                   for params, wd, suffix in ((decay, weight_decay, ""), (plain, 0.0, ".no_decay")) if params]
    return groups


class GradualUnfreezing(pl.Callback):
    """Only the top ``1 + ⌊step / every⌋`` layer groups train; the rest keep ``requires_grad`` off (no gradient,
    so the optimiser leaves them alone). Groups frozen for good by the config (frozen embeddings) stay frozen."""

    def __init__(self, every_epochs: float) -> None:
        self.every_epochs = every_epochs
        self.groups: list[list[nn.Parameter]] = []
        self.every_steps = 1
        self.unfrozen = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layers = layer_groups(pl_module.net)
        self.groups = [[p for p in params if p.requires_grad] for _, params in layers]
        steps_per_epoch = trainer.estimated_stepping_batches / max(1, trainer.max_epochs or 1)
        self.every_steps = max(1, math.ceil(self.every_epochs * steps_per_epoch))
        self.unfrozen = -1
        self.apply(trainer.global_step)

    def apply(self, step: int) -> int:
        """Set ``requires_grad`` for optimiser step ``step``; returns how many groups (from the top) train."""
        count = min(len(self.groups), 1 + step // self.every_steps)
        if count != self.unfrozen:
            for index, params in enumerate(self.groups):
                for parameter in params:
                    parameter.requires_grad_(index >= len(self.groups) - count)
            self.unfrozen = count
        return count

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.apply(trainer.global_step) and pl_module.logger is not None:
            pl_module.log("unfrozen_groups", float(self.unfrozen), on_step=True, on_epoch=False)


def open_language_model(path: str | Path, option: str, direction: str | None = None) -> PretrainedLM:
    """An LM model directory named by the setting ``option``, opened once and typed for reuse (see
    :mod:`toolkit.specs.lm`); ``direction``: the reading direction it must have.

    Raises:
        ConfigError: naming ``option``: not a (valid) language-model directory, or one of the other direction.
    """
    return reuse_language_model(open_lm_directory(path, option), direction)


def initialise_from_lms(net: nn.Module, encoder_config: Any, init: InitFrom, tokens: list[str]
                        ) -> list[dict[str, Any]]:
    """Copy the LMs of ``init`` into ``net`` (``embed`` and ``encoder``) for the vocabulary ``tokens``; returns the
    meta.json ``init_from`` records (with what was copied)."""
    from toolkit.nn.lm_transfer import TransferReport, copy_embeddings, copy_encoder, vocabulary_rows

    records = []
    embedded = False
    for direction in ("forward", "backward"):
        path = getattr(init, direction)
        if path is None:
            continue
        lm = open_language_model(path, f"model.init_from.{direction}", direction)
        state = lm.state_dict
        table = net.embed.embedding if hasattr(net.embed, "embedding") else net.embed
        rows, found = vocabulary_rows(tokens, lm.vocab.index)
        copied = []
        if not embedded:  # one embedding table: the forward LM's (a backward LM trained on it shares it)
            copy_embeddings(table, state["embed.weight"], rows, found)
            embedded = True
            copied.append("embeddings")
        layers = 0
        if init.encoder:
            encoder_state = {name[len("encoder."):]: tensor for name, tensor in state.items()
                             if name.startswith("encoder.")}
            layers = copy_encoder(net.encoder, lm.config.network.encoder, encoder_state, direction)
            copied.append("encoder")
        report = TransferReport(direction, int(found.sum()), len(tokens), layers)
        print(f"init_from: {report}")
        records.append({**lm.record(), "copied": copied, "words_found": report.words_found,
                        "words_total": report.words_total, "layers": layers})
    return records
