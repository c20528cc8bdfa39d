"""The part every task's DataModule shares: length-bucketed loaders over prepared datasets.

Under DDP, evaluation must score every dev example exactly once. Lightning's default distributed sampler pads
each rank's share by repeating examples so that all ranks get the same count; scores over that padded set
differ from the corpus figure. Evaluation loaders therefore shard the dev set themselves, without padding
(:class:`RankShard`), and the tasks combine the shards' statistics (torchmetrics' synced states, or gathered
predictions for entity F1) into corpus-level metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler

from toolkit.data.batching import BucketBatchSampler
from toolkit.errors import DataError

T = TypeVar("T")


def carve_dev(examples: list[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split off a random ``fraction`` of ``examples`` as a dev set (fixed ``seed`` → same split every run)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {fraction}")
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    size = max(1, round(len(examples) * fraction))
    dev = sorted(order[:size])
    train = sorted(order[size:])
    return [examples[i] for i in train], [examples[i] for i in dev]


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
        if not train and torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            return self._rank_loader(split)
        sampler = RandomSampler(dataset) if train else SequentialSampler(dataset)
        batch_size = self.hparams.batch_size if train else self.hparams.eval_batch_size
        batches = BucketBatchSampler(sampler, batch_size, drop_last=False, lengths=dataset.lengths,
                                     shuffle=train, seed=self.hparams.get("split_seed", 0))
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_sampler=batches, collate_fn=type(self).collate,
                          num_workers=workers, persistent_workers=workers > 0)

    def _rank_loader(self, split: str) -> DataLoader:
        """This rank's share of an evaluation split (examples ``rank::world``, no padding), length-bucketed."""
        dataset = self.datasets[split]
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if len(dataset) < world:
            raise DataError(f"data.{split}", f"has {len(dataset)} examples, fewer than the {world} DDP processes",
                            hint="use fewer devices or a larger dev set")
        share = list(range(rank, len(dataset), world))
        batches = list(BucketBatchSampler(share, self.hparams.eval_batch_size, lengths=dataset.lengths,
                                          shuffle=False))
        # An iterable dataset: Lightning leaves its sampling alone (no distributed sampler injected).
        return DataLoader(RankShard(dataset, batches, type(self).collate), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


class RankShard(IterableDataset):
    """Fixed batches of a dataset (one DDP rank's share), collated; iterated in order, sized for Lightning."""

    def __init__(self, dataset: Any, batches: Sequence[list[int]], collate: Callable[[list[Any]], Any]) -> None:
        self.dataset, self.batches, self.collate = dataset, list(batches), collate

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            yield self.collate([self.dataset[index] for index in batch])

    def __len__(self) -> int:
        return len(self.batches)
