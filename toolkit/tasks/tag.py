"""Sequence tagging (NER): a thin LightningModule around :class:`~toolkit.nn.tagger.TagNet`."""

from __future__ import annotations

import logging

import torch
from torchmetrics import MeanMetric

from toolkit.config import config_from_dict, config_to_dict
from toolkit.data.lm import LMDirectory
from toolkit.data.tag import TagDataInfo
from toolkit.data.tag_features import TaggingFeaturizer
from toolkit.data.tagschemes import convert
from toolkit.metrics import entity_scores
from toolkit.nn.tagger import TagNetConfig
from toolkit.progress import progress
from toolkit.specs.lm import reuse_language_model
from toolkit.specs.tag import TagConfig
from toolkit.tasks.base import OptimizerConfig, TaskModule
from toolkit.tasks.finetune import FineTuneConfig, InitFrom

log = logging.getLogger(__name__)


class TagModule(TaskModule):
    """Trains a BiLSTM-CRF (or softmax) tagger; validation reports seqeval entity F1 in the data's scheme.

    Args:
        network: architecture (features, encoder, decoder).
        optimizer: learning rate, weight decay and schedule.
        data_info: vocabulary sizes, tags, schemes and feature sources (:class:`~toolkit.data.tag.TagDataInfo`)
            from the DataModule (the CLI links it), or its dict form. The language models of LM features come
            opened, as the data module read them; from the dict form (path and weights sha256) they are opened
            again and must still hold the same weights.
        init_from: language models whose embeddings and encoder layers the network starts from.
        finetune: discriminative learning rates and gradual unfreezing.
    """

    task = "tag"
    monitor = "val_f1"

    def __init__(self, network: TagNetConfig | None = None, optimizer: OptimizerConfig | None = None,
                 data_info: TagDataInfo | dict | None = None, init_from: InitFrom | None = None,
                 finetune: FineTuneConfig | None = None) -> None:
        network = config_from_dict(TagNetConfig, network or TagNetConfig(), "model.network")
        optimizer = config_from_dict(OptimizerConfig, optimizer or OptimizerConfig(), "model.optimizer")
        super().__init__(optimizer, init_from, finetune)
        info = TagDataInfo.of(data_info)
        # The data module's hand-over as is; its plain form in the checkpoint (loaded with weights_only=True).
        self.save_hyperparameters({"network": config_to_dict(network), "optimizer": config_to_dict(optimizer),
                                   "data_info": info.to_dict(), **self.pretraining_hparams(),
                                   **self.class_path_hparam()})
        self.network_config = network
        self.tags = list(info.tags)
        self.scheme, self.input_scheme = info.scheme, info.input_scheme
        language_models = {direction: reuse_language_model(
            lm if isinstance(lm, LMDirectory) else lm.open(f"data.lm_{direction}"), direction)
            for direction, lm in info.language_models.items()}
        self.model_config = TagConfig(network, info.vocab_size, info.num_chars, self.scheme, self.input_scheme,
                                      transformer=bool(info.transformer),
                                      **{f"lm_{direction}": lm.config for direction, lm in language_models.items()})
        self.model_config.validate()
        self.net = self.spec.build_net(self.model_config, self.tags, transformer_path=info.transformer,
                                       load_transformer_weights=True)
        for direction, lm in language_models.items():
            getattr(self.net, f"lm_{direction}").load_from_lm(lm.state_dict)
            self.init_from_records = [*self.init_from_records, {**lm.record(), "copied": ["lm_features"]}]
        self._gold: list[list[str]] = []
        self._predicted: list[list[str]] = []
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()  # sentence-weighted; exact under DDP

    def on_fit_start(self) -> None:
        """Run the frozen feature extractors (a frozen transformer, the LMs of LM features) once over the training
        and dev sentences and keep their word features.

        Frozen features never change, and on a CPU a transformer costs more than the rest of an epoch, so every
        later epoch reads the cached features (stored as float16: ~200 MB for CoNLL-2003 per 512 dimensions).
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        transformer = self.net.transformer
        wanted = [key for key, frozen in (
            ("transformer_features", transformer is not None and not transformer.config.fine_tune),
            ("lm_features", bool(self.net.lm_directions))) if frozen]
        if not wanted or datamodule is None:
            return
        for split in ("train", "val"):
            dataset = datamodule.datasets.get(split)
            keys = [key for key in wanted if dataset is not None and key not in dataset.items[0]]
            if not keys:
                continue
            # By what the extractors read (subwords, with document context far more than the sentence's
            # tokens): a batch of like lengths pads least.
            order = sorted(range(len(dataset.items)), key=lambda i: len(dataset.items[i].get("subwords", ()))
                           or dataset.lengths[i])
            with torch.inference_mode():
                starts = range(0, len(order), 64)
                for start in progress(starts, f"frozen features ({split})", len(starts), "batches"):
                    chosen = [dataset.items[i] for i in order[start:start + 64]]
                    batch = {k: v.to(self.device) for k, v in TaggingFeaturizer.collate(chosen).items()}
                    for key in keys:
                        features = (self.net.lm_features(batch) if key == "lm_features" else transformer(
                            batch["subwords"], batch["subword_mask"], batch["subword_words"], batch["words"].size(1)))
                        features = features.half().cpu()
                        for row, item in enumerate(chosen):
                            item[key] = features[row, : len(item["words"])].clone()
            log.info("cached frozen %s for %d %s sentences", " and ".join(keys), len(order), split)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss = self.net.loss(self.net(batch), batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["lengths"]))
        return loss

    def _evaluate(self, batch: dict) -> None:
        scores = self.net(batch)
        loss_metric = self.val_loss if self._stage == "val" else self.test_loss
        loss_metric.update(self.net.loss(scores, batch), weight=len(batch["lengths"]))
        self.log(f"{self._stage}_loss", loss_metric, batch_size=len(batch["lengths"]))
        paths, _ = self.net.decode(scores, batch)
        for row, path in enumerate(paths):
            gold = [self.tags[i] for i in batch["tags"][row, : len(path)].tolist()]
            self._gold.append(convert(gold, self.scheme, self.input_scheme))
            self._predicted.append(convert([self.tags[i] for i in path], self.scheme, self.input_scheme))

    def _report(self) -> None:
        gold, predicted = self._gold, self._predicted
        self._gold, self._predicted = [], []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Entity F1 is not a mean of per-shard F1s: gather every rank's sentences and score the corpus.
            shards: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shards, (gold, predicted))
            gold = [tags for shard_gold, _ in shards for tags in shard_gold]
            predicted = [tags for _, shard_predicted in shards for tags in shard_predicted]
        if not gold:
            return
        scores = entity_scores(gold, predicted, self.input_scheme)
        # Every rank now holds the same corpus figures: the synced mean is that figure.
        for key in ("precision", "recall", "f1"):
            self.log(f"{self._stage}_{key}", scores[key], prog_bar=key == "f1", sync_dist=True)

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._stage = "val"
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        self._stage = "val"
        self._report()

    def test_step(self, batch: dict, batch_index: int) -> None:
        self._stage = "test"
        self._evaluate(batch)

    def on_test_epoch_end(self) -> None:
        self._stage = "test"
        self._report()
