"""Data-parallel batch labelling on Lightning: ``Trainer.predict`` under DDP, one shard per rank, merged in order.

Why Lightning: it already launches and connects the processes (one per GPU, or per CPU process, across
nodes), places each on its device and sets thread counts; the labelling itself stays the single-process
code (:class:`pipelines.job.LabelJob`). How:

* every rank reads the whole input with the same :class:`~pipelines.sources.InputReader` and keeps the
  windows ``i % world_size == rank`` (reading and parsing is cheap next to the model), so a window holds the
  same records, and is batched the same way, as in a single-process run;
* ``predict_step`` labels one window; a :class:`BasePredictionWriter` appends it to the rank's shard
  (``OUTPUT.ddp/rank-R-of-W.*``) and commits it with the same checkpoint as the single-process job, plus an
  index line (bytes per window), so a killed rank resumes where it stopped;
* when every rank is done, rank 0 interleaves the shards window by window (streaming copy, constant memory)
  into ``OUTPUT`` and ``OUTPUT.errors.jsonl``: the same bytes a single process writes.

The output directory must be shared by all ranks (one machine, or a shared filesystem across nodes).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, IterableDataset

from pipelines.checkpoint import Checkpoint, ResumeError, State, read_state, writing_output
from pipelines.job import LabelJob, fingerprint, progress_bar, publish, summary
from pipelines.outputs import output_paths, shard_folder
from pipelines.sources import InputReader, Window
from toolkit.artifact import fsync_directory

ROLES = ("data", "errors", "index")


def shard_paths(output: Path, rank: int, world: int) -> dict[str, Path]:
    """A rank's files: ``OUTPUT.ddp/rank-R-of-W.{data,errors,index,progress}``."""
    return {role: shard_folder(output) / f"rank-{rank}-of-{world}.{role}" for role in (*ROLES, "progress")}


class _RankWindows(IterableDataset):
    """This rank's windows, from where its shard checkpoint says to go on."""

    def __init__(self, reader: InputReader, checkpoint: Checkpoint, rank: int, world: int) -> None:
        self.reader, self.checkpoint, self.rank, self.world = reader, checkpoint, rank, world

    def __iter__(self):
        state = self.checkpoint.state
        if state.complete:
            return iter(())
        return self.reader.windows(state.next, self.checkpoint.check_input,
                                   keep=lambda index: index % self.world == self.rank)


class LabelModule(pl.LightningModule):
    """Wraps a :class:`LabelJob` so that ``Trainer.predict`` feeds it windows on each rank's device."""

    def __init__(self, job: LabelJob, reader: InputReader, output: Path, restart: bool) -> None:
        super().__init__()
        self.job, self.reader, self.output, self.restart = job, reader, output, restart
        self.net = job.predictor.net  # registered, so Lightning moves it to this rank's device
        self.checkpoint: Checkpoint | None = None

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        self.job.predictor.device = self.device  # Lightning has moved the net here; the predictor batches here
        paths = shard_paths(self.output, rank, world)
        with writing_output(paths["progress"].parent):
            paths["progress"].parent.mkdir(exist_ok=True)
        # the single-process job's fingerprint (backend, quantization, device type… of this rank), plus the split
        self.checkpoint = Checkpoint(paths["progress"], {role: paths[role] for role in ROLES},
                                     fingerprint(self.job, self.reader, processes=world, rank=rank))
        self.checkpoint.open(self.restart)
        # batch_size=None: each dataset item (one window) is one "batch", passed through uncollated
        return DataLoader(_RankWindows(self.reader, self.checkpoint, rank, world), batch_size=None)

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch  # a Window holds strings; the predictor moves its own tensors

    def predict_step(self, window: Window, batch_idx: int = 0) -> tuple[Window, Any]:
        return window, self.job.label(window)


class ShardWriter(BasePredictionWriter):
    """Commits each labelled window to the rank's shard as soon as it is predicted (nothing kept in memory)."""

    def __init__(self, progress: bool | None) -> None:
        super().__init__(write_interval="batch")
        self.progress, self.bar = progress, None

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: LabelModule, prediction: Any, batch_indices: Any,
                           batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        window, chunk = prediction
        state = pl_module.checkpoint.state
        if self.bar is None:  # rank 0 shows its own share; the others stay quiet
            self.bar = progress_bar(self.progress if trainer.global_rank == 0 else False,
                                    state.records + state.errors, f"label (rank 0 of {trainer.world_size})")
        index_line = f"{window.index} {len(chunk.data)} {len(chunk.errors)}\n".encode()
        pl_module.checkpoint.commit({"data": chunk.data, "errors": chunk.errors, "index": index_line}, window.end,
                                    window.digest, chunk.records, chunk.bad)
        self.bar.update(chunk.records + chunk.bad)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _read_index(path: Path) -> list[tuple[int, int, int]]:
    """``(window, data bytes, error bytes)`` per committed window of one shard (a few numbers per window)."""
    with open(path, encoding="ascii") as handle:
        return [tuple(int(field) for field in line.split()) for line in handle]


def merge_shards(output: Path, world: int) -> State:
    """Interleave the complete shards window by window into the single-process job's files, then publish."""
    paths = output_paths(output)
    folder = shard_paths(output, 0, world)["progress"].parent
    states = [read_state(shard_paths(output, rank, world)["progress"]) for rank in range(world)]
    if not all(state.complete for state in states):
        raise ResumeError(f"{folder}: a rank did not finish its shard; run the same command again")
    indexes = [iter(_read_index(shard_paths(output, rank, world)["index"])) for rank in range(world)]
    sources = [{role: open(shard_paths(output, rank, world)[role], "rb") for role in ("data", "errors")}  # noqa: SIM115
               for rank in range(world)]
    merged = Checkpoint(paths["progress"], {"data": paths["data"], "errors": paths["errors"]},
                        {"merge_of": str(folder), "processes": world})
    merged.open(restart=True)  # a merge interrupted by a crash is simply redone from the shards
    merged.close_files()
    try:
        with writing_output(paths["data"]), open(paths["data"], "wb") as data, open(paths["errors"], "wb") as errors:
            window = 0
            while (entry := next(indexes[window % world], None)) is not None:
                index, data_bytes, error_bytes = entry
                if index != window:
                    raise ResumeError(f"{folder}: shard {window % world} holds window {index} where {window} belongs")
                shard = sources[window % world]
                with writing_output(paths["data"]):
                    data.write(shard["data"].read(data_bytes))
                with writing_output(paths["errors"]):
                    errors.write(shard["errors"].read(error_bytes))
                window += 1
            for role, handle in (("data", data), ("errors", errors)):
                with writing_output(paths[role]):
                    handle.flush()
                    os.fsync(handle.fileno())
    finally:
        for shard in sources:
            for handle in shard.values():
                handle.close()
    merged.state.records = sum(state.records for state in states)
    merged.state.errors = sum(state.errors for state in states)
    merged.state.lengths = {"data": paths["data"].stat().st_size, "errors": paths["errors"].stat().st_size}
    merged.mark_complete()
    publish(merged, output, paths["data"], paths["errors"], paths["errors_final"])
    with writing_output(folder):
        shutil.rmtree(folder)
    fsync_directory(output.parent)
    return merged.state


def label_distributed(job: LabelJob, reader: InputReader, output: Path, *, restart: bool, progress: bool | None,
                      devices: int, accelerator: str, strategy: str, num_nodes: int) -> dict[str, Any] | None:
    """Run the job data-parallel (``Trainer.predict``); rank 0 merges and returns the summary, the others None."""
    writer = ShardWriter(progress)
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                         logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=False, callbacks=[writer], use_distributed_sampler=False)
    module = LabelModule(job, reader, output, restart)
    started = time.perf_counter()
    with warnings.catch_warnings():  # reading is cheap: no dataloader workers needed
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*infer the batch indices.*")  # a window is not a sampled batch
        trainer.predict(module, return_predictions=False)
    writer.close()
    if not module.checkpoint.state.complete:  # a rank with no window left gets here too
        module.checkpoint.mark_complete()
    trainer.strategy.barrier("label-merge")
    if trainer.global_rank != 0:
        return None
    state = merge_shards(output, trainer.world_size)
    return summary(output, state, output_paths(output)["errors_final"], None, state.records + state.errors,
                   time.perf_counter() - started)
