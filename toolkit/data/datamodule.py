"""The part every task's DataModule shares: length-bucketed loaders over prepared datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytorch_lightning as pl
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from toolkit.data.batching import BucketBatchSampler
from toolkit.errors import DataError


class BucketedDataModule(pl.LightningDataModule):
    """Base for the task DataModules: ``_prepare()`` fills ``self.datasets`` (``train``, ``val`` and optionally
    ``test``, each with a ``lengths`` sequence); this class turns them into length-bucketed DataLoaders.

    Subclasses set ``collate`` (a batch of dataset items → dict of padded tensors) and save ``batch_size``,
    ``eval_batch_size`` and ``num_workers`` (and optionally ``split_seed``, the batch-order seed) as hparams.
    """

    collate: ClassVar[Callable[[list[Any]], dict[str, Any]]]
    datasets: dict[str, Any]

    def _prepare(self) -> None:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self._prepare()
        if stage == "test" and "test" not in self.datasets:
            raise DataError("data.test_file", "is not set",
                            hint="pass --data.init_args.test_file FILE to run `bilstm test`")

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.datasets[split]
        sampler = RandomSampler(dataset) if train else SequentialSampler(dataset)
        batch_size = self.hparams.batch_size if train else self.hparams.eval_batch_size
        batches = BucketBatchSampler(sampler, batch_size, drop_last=False, lengths=dataset.lengths,
                                     shuffle=train, seed=self.hparams.get("split_seed", 0))
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_sampler=batches, collate_fn=type(self).collate,
                          num_workers=workers, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
