"""LightningDataModule: a fresh random stream for training, fixed sets for validation and test.

Batch k of the training stream is a pure function of (seed, rank, k), so
- every rank (its own `rank` in the key) and every dataloader worker (batches k = w, w + n, ...)
  draws distinct data, while the same seed always gives the same data in the same order;
- the stream position is one integer (`position`), saved in checkpoints, so a resumed run
  continues exactly where the killed one stopped.

A training batch is (x, y, mask, reset): reset=True means the rows start fresh streams (always,
for stateless tasks); stateful label tasks serve `chunk` steps of `batch` parallel streams, row i of
consecutive batches continuing stream i until the next reset. Stateful windows (Keras' stateful
layer fed one sequence's windows in order, unshuffled) serve `batch` consecutive windows of one
sequence; row i of batch k+1 continues from row i of batch k, so the state reaching window w comes
from window w - batch, and reset=True starts each new sequence. Validation and test sets are served
in that same layout (several sequences side by side), from a reset state at each sequence.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from src.datamodules.data_config import Data
from src.datamodules.generate import Batch, generator, make_batch, make_split
from src.datamodules.tasks import Task


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
        if t.stateful_stream:  # one block = one fresh sequence of every stream
            self.per_block = t.sample_steps // t.batch_steps
        elif t.rows_per_sequence > 1:
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
            if t.stateful_stream:
                block = t.sequences(gen, self.batch)
            else:  # per_block > 1: whole sequences of windows, cut into batches served in order
                block = make_batch(t, gen, self.batch * self.per_block)
            self._cache = (b, block)
        return self._cache[1]

    def get(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Global batch k of this rank's stream (k modulo `cycle` when overfitting a few batches)."""
        b, i = divmod(k % self.cycle if self.cycle else k, self.per_block)
        x, y, mask = self._block(b)
        if self.per_block == 1:
            return x, y, mask, True
        if self.task.stateful_windows:  # batch divides rows_per_sequence
            s = slice(i * self.batch, (i + 1) * self.batch)
            return x[s], y[s], mask[s], i * self.batch % self.task.rows_per_sequence == 0
        if self.task.stateful:
            s = slice(i * self.task.batch_steps, (i + 1) * self.task.batch_steps)
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
        eval_batch_size: int = Data.model_fields["eval_batch_size"].default,  # one home: the data schema
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
        if self.val_set is None:
            self.val_set = self._shard(make_split(self.task, self.val_seed, self.val_size, self.device))
        if self.test_set is None:
            self.test_set = self._shard(make_split(self.task, self.test_seed, self.test_size, self.device))

    def _shard(self, data: Batch) -> Batch:
        """This rank's rows: every world_size-th sample, or every world_size-th whole sequence of
        stateful windows (rows (sequence, window) in order)."""
        shard = slice(self.rank, None, self.world_size)
        if self.task.stateful_windows:
            wps = self.task.rows_per_sequence
            return tuple(t.unflatten(0, (-1, wps))[shard].flatten(0, 1) for t in data)
        return tuple(t[shard] for t in data)

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
        if not self.task.stateful_windows:
            return PrebuiltBatches([tuple(t[i : i + size] for t in data) + (True,) for i in range(0, n, size)])
        # the training layout: batch j of a sequence is its windows j*rows .. (j+1)*rows - 1; up to
        # eval_batch_size // rows sequences side by side, row (s, i) continuing row (s, i) of batch j-1
        rows = self.batch_size // self.world_size
        per_seq = self.task.rows_per_sequence // rows
        seqs = [t.unflatten(0, (-1, per_seq, rows)) for t in data]  # (sequence, batch j, row i, ...)
        group = max(1, size // rows)
        return PrebuiltBatches([
            tuple(t[g : g + group, j].flatten(0, 1) for t in seqs) + (j == 0,)
            for g in range(0, seqs[0].shape[0], group) for j in range(per_seq)
        ])  # fmt: skip

    def val_dataloader(self) -> PrebuiltBatches:
        return self._eval_batches(self.val_set)

    def test_dataloader(self) -> PrebuiltBatches:
        return self._eval_batches(self.test_set)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
