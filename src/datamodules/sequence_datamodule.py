"""LightningDataModule: a fresh random stream for training, fixed sets for validation and test.

Batch k of the training stream is a pure function of (seed, rank, k), so
- every rank (its own `rank` in the key) and every dataloader worker (batches k = w, w + n, ...)
  draws distinct data, while the same seed always gives the same data in the same order;
- the stream position is one integer (`position`), saved in checkpoints, so a resumed run
  continues exactly where the killed one stopped.

A training batch is (x, y, mask, reset): reset=True means the rows start fresh streams (always,
for stateless tasks); stateful tasks serve `chunk` steps of `batch` parallel streams, row i of
consecutive batches continuing stream i until the next reset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from src.config import Task
from src.datamodules.generate import Batch, frame_windows, generator, label_targets, make_batch, make_split, uniform


class TrainStream(IterableDataset):
    """Yields batches `start + skip` .. `start + length - 1` of this rank's stream (an epoch)."""

    def __init__(
        self,
        task: Task,
        batch: int,
        start: int,
        length: int,
        seed: int,
        rank: int,
        device: str,
        cycle: int = 0,
        skip: int = 0,
    ):
        # `skip` batches of the epoch were trained before a resume: len() stays the epoch length,
        # because Lightning counts the restored batches toward it and ends the epoch at len().
        self.task, self.batch, self.start, self.length, self.cycle = task, batch, start, length, cycle
        self.skip = skip
        self.seed, self.rank, self.device = seed, rank, device
        t = task
        if t.stateful:  # one block = one fresh sequence of every stream
            self.per_block = t.seq_len // t.chunk
        elif t.framing == "window" and t.stream == "uniform" and t.rows_per_sequence > 1:
            # one block = whole sequences that split into whole batches, served in order
            self.per_block = math.lcm(batch, t.rows_per_sequence) // batch
        else:
            self.per_block = 1
        self._cache: tuple[int, Batch] | None = None

    def __len__(self) -> int:
        return self.length

    def _block(self, b: int) -> Batch:
        if self._cache is None or self._cache[0] != b:
            gen = generator(self.device, self.seed, 0, self.rank, b)
            t = self.task
            if t.stateful:
                block = label_targets(t, uniform(gen, (self.batch, t.seq_len), t.vocab))
            elif self.per_block > 1:
                block = frame_windows(t, gen, self.batch * self.per_block)
            else:
                block = make_batch(t, gen, self.batch)
            self._cache = (b, block)
        return self._cache[1]

    def get(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Global batch k of this rank's stream (k modulo `cycle` when overfitting a few batches)."""
        b, i = divmod(k % self.cycle if self.cycle else k, self.per_block)
        x, y, mask = self._block(b)
        if self.per_block == 1:
            return x, y, mask, True
        if self.task.stateful:
            s = slice(i * self.task.chunk, (i + 1) * self.task.chunk)
            return x[:, s], y[:, s], mask[:, s], i == 0
        s = slice(i * self.batch, (i + 1) * self.batch)
        return x[s], y[s], mask[s], True

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]]:
        info = get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        for i in range(self.skip + w, self.length, n):
            yield self.get(self.start + i)


class PrebuiltBatches:
    """A loader over batches already on the device (Lightning would read a plain list as a list
    of loaders, and a DataLoader would collate sample by sample)."""

    def __init__(self, batches: list):
        self.batches = batches

    def __iter__(self) -> Iterator:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class SequenceDataModule(pl.LightningDataModule):
    """`batch_size` is global; under DDP each of the world_size ranks gets batch_size / world_size."""

    def __init__(
        self,
        task: Task,
        batch_size: int,
        batches_per_epoch: int,
        val_size: int,
        test_size: int,
        seed: int = 0,
        val_seed: int = 1,
        test_seed: int = 2,
        eval_batch_size: int = 4096,
        num_workers: int = 0,
        overfit_batches: int = 0,
    ):
        super().__init__()
        self.task = task
        self.batch_size, self.batches_per_epoch = batch_size, batches_per_epoch
        self.val_size, self.test_size = val_size, test_size
        self.seed, self.val_seed, self.test_seed = seed, val_seed, test_seed
        self.eval_batch_size, self.num_workers = eval_batch_size, num_workers
        self.overfit_batches = overfit_batches
        self.position = 0  # global index of the next training batch of this rank's stream
        self.rank, self.world_size, self.device = 0, 1, torch.device("cpu")
        self.val_set: Batch | None = None
        self.test_set: Batch | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.rank, self.world_size = self.trainer.global_rank, self.trainer.world_size
            if self.num_workers == 0:  # generate batches directly on the training device
                self.device = self.trainer.strategy.root_device
        shard = slice(self.rank, None, self.world_size)
        if self.val_set is None:
            self.val_set = tuple(t[shard] for t in make_split(self.task, self.val_seed, self.val_size, self.device))
        if self.test_set is None:
            self.test_set = tuple(t[shard] for t in make_split(self.task, self.test_seed, self.test_size, self.device))

    def train_stream(self, start: int, length: int, skip: int = 0) -> TrainStream:
        device = str(self.device) if self.num_workers == 0 else "cpu"
        per_rank = self.batch_size // self.world_size
        return TrainStream(self.task, per_rank, start, length, self.seed, self.rank, device, self.overfit_batches, skip)

    def train_dataloader(self) -> DataLoader:
        # Called at every epoch start (reload_dataloaders_every_n_epochs=1) and after a resume: the
        # stream continues from the number of batches already trained on, which Lightning restores
        # from the checkpoint, so a resumed run sees exactly the batches an uninterrupted one would.
        done = 0  # batches of this epoch already trained (a resume inside an epoch)
        if self.trainer is not None:
            progress = self.trainer.fit_loop.epoch_loop.batch_progress
            self.position = progress.total.ready
            # current.ready still counts the previous epoch when a new one starts; it is below
            # batches_per_epoch only when resuming inside an epoch.
            if progress.current.ready < self.batches_per_epoch:
                done = progress.current.ready
        stream = self.train_stream(self.position - done, self.batches_per_epoch, skip=done)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers, persistent_workers=False)

    def _eval_batches(self, data: Batch) -> PrebuiltBatches:
        n, size = data[0].shape[0], self.eval_batch_size
        return PrebuiltBatches([tuple(t[i : i + size] for t in data) + (True,) for i in range(0, n, size)])

    def val_dataloader(self) -> PrebuiltBatches:
        return self._eval_batches(self.val_set)

    def test_dataloader(self) -> PrebuiltBatches:
        return self._eval_batches(self.test_set)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
