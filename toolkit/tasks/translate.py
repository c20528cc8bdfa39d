"""Translation: a thin LightningModule around :class:`~toolkit.nn.seq2seq.TranslateNet`.

Training: teacher forcing with label-smoothed cross-entropy over the real target tokens (the output
softmax is computed only at non-padding positions). Logged: ``train_loss``, ``train_ppl`` (perplexity
of the unsmoothed NLL), and per validation epoch ``val_loss``/``val_ppl`` (token-weighted over the whole
dev set) plus ``val_bleu``/``val_chrf``: sacreBLEU (cased, detokenised) of greedy translations against
the raw reference sentences. ``val_bleu`` picks the checkpoint that is exported. Under DDP each process
decodes its share of the dev set and the texts are gathered before scoring.
"""

from __future__ import annotations

import math

import torch

from toolkit.config import config_from_dict, config_to_dict
from toolkit.data.translate import TranslateDataInfo
from toolkit.metrics import translation_scores
from toolkit.nn.beam import DecodingConfig
from toolkit.nn.seq2seq import TranslateNetConfig
from toolkit.specs.translate import SpecialIds, TranslateConfig
from toolkit.tasks.base import OptimizerConfig, TaskModule


def smoothed_nll(log_probs: torch.Tensor, target: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-smoothed cross-entropy, as ``F.cross_entropy(label_smoothing=ε)``: ``(1-ε)·NLL + ε·mean(-log p)``.

    Args:
        log_probs: ``[tokens, vocab]``; target: ``[tokens]``.

    Returns:
        ``(smoothed loss summed over tokens, NLL summed over tokens)``; the NLL gives perplexity.
    """
    nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    uniform = -log_probs.mean(dim=-1)
    return ((1.0 - smoothing) * nll + smoothing * uniform).sum(), nll.sum()


class TranslateModule(TaskModule):
    """Trains an attentional encoder–decoder (AdamW with warm-up and decay, label smoothing).

    Args:
        network: architecture (embeddings, encoder, decoder, attention, tying).
        optimizer: learning rate, weight decay and schedule.
        data_info: the vocabulary sizes (:class:`~toolkit.data.translate.TranslateDataInfo`) from the DataModule
            (the CLI links it), or its dict form; the special token ids are the fixed ones of every tokenizer the
            toolkit trains (``toolkit.data.subword``).
        label_smoothing: ε of the label-smoothed cross-entropy.
        decoding: search defaults stored with the model (validation BLEU always decodes greedily).
        val_bleu: decode the dev set each validation epoch for BLEU/chrF (off: ``val_bleu`` is minus the
            dev loss so checkpointing still works).
    """

    task = "translate"
    monitor = "val_bleu"

    def __init__(
        self,
        network: TranslateNetConfig | None = None,
        optimizer: OptimizerConfig | None = None,
        data_info: TranslateDataInfo | dict | None = None,
        label_smoothing: float = 0.1,
        decoding: DecodingConfig | None = None,
        val_bleu: bool = True,
    ) -> None:
        network = config_from_dict(TranslateNetConfig, network or TranslateNetConfig(), "model.network")
        optimizer = config_from_dict(OptimizerConfig, optimizer or OptimizerConfig(), "model.optimizer")
        decoding = config_from_dict(DecodingConfig, decoding or DecodingConfig(), "model.decoding")
        super().__init__(optimizer)
        info = TranslateDataInfo.of(data_info)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        decoding.validate()
        # Plain dicts only (data_info too), so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters({"network": config_to_dict(network), "optimizer": config_to_dict(optimizer),
                                   "data_info": info.to_dict(), "label_smoothing": label_smoothing,
                                   "decoding": config_to_dict(decoding), "val_bleu": val_bleu,
                                   **self.class_path_hparam()})
        self.network_config, self.decoding = network, decoding
        self.model_config = TranslateConfig(network, info.source_vocab_size, info.target_vocab_size, decoding,
                                            SpecialIds())
        self.pad_id = self.model_config.special_ids.pad
        self.net = self.spec.build_net(self.model_config, None)
        self.detokenize = None  # target ids → text; taken from the data module in setup()
        self._eval: dict = {}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        self.detokenize = getattr(datamodule, "detokenize", None)

    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(smoothed loss sum, NLL sum, number of target tokens)."""
        attentional, _ = self.net(batch["source"], batch["source_lengths"], batch["target_in"])
        real = batch["target_out"] != self.pad_id
        log_probs = torch.log_softmax(self.net.logits(attentional[real]).float(), dim=-1)
        loss, nll = smoothed_nll(log_probs, batch["target_out"][real], self.hparams.label_smoothing)
        return loss, nll, int(real.sum())

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss, nll, tokens = self._loss(batch)
        size = len(batch["references"])
        self.log("train_loss", loss / tokens, prog_bar=True, batch_size=size)
        self.log("train_ppl", math.exp(min(float(nll.detach()) / tokens, 50.0)), batch_size=size)
        return loss / tokens

    # -- evaluation: loss/perplexity over all tokens, BLEU/chrF of greedy decodes --------------------------

    def _start(self) -> None:
        self._eval = {"loss": 0.0, "nll": 0.0, "tokens": 0, "hypotheses": [], "references": []}

    def on_validation_epoch_start(self) -> None:
        self._start()

    def on_test_epoch_start(self) -> None:
        self._start()

    def _evaluate(self, batch: dict) -> None:
        loss, nll, tokens = self._loss(batch)
        state = self._eval
        state["loss"] += float(loss)
        state["nll"] += float(nll)
        state["tokens"] += tokens
        if self.hparams.val_bleu:
            greedy = DecodingConfig(**{**config_to_dict(self.decoding), "beam_size": 1})
            results = self.net.translate(batch["source"], batch["source_lengths"], greedy)
            ids = [result.tokens for result in results]
            state["hypotheses"] += self.detokenize(ids) if self.detokenize else [" ".join(map(str, i)) for i in ids]
            state["references"] += batch["references"]

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch)

    def test_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch)

    def _gathered(self) -> dict:
        """The evaluation sums and texts of every process (DDP), or this process's alone."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self._eval
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, self._eval)
        return {key: sum((part[key] for part in parts), [] if isinstance(self._eval[key], list) else 0)
                for key in self._eval}

    def _finish(self, prefix: str) -> None:
        state = self._gathered()
        tokens = max(state["tokens"], 1)
        metrics = {f"{prefix}loss": state["loss"] / tokens, f"{prefix}ppl": math.exp(min(state["nll"] / tokens, 50.0))}
        if self.hparams.val_bleu and state["hypotheses"]:
            scores = translation_scores(state["hypotheses"], state["references"])
            metrics[f"{prefix}bleu"], metrics[f"{prefix}chrf"] = scores["bleu"], scores["chrf"]
        else:
            metrics[f"{prefix}bleu"] = -metrics[f"{prefix}loss"]
        self.log_dict(metrics, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._finish("val_")

    def on_test_epoch_end(self) -> None:
        self._finish("test_")
