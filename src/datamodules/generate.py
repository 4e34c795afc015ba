"""Batches of a task: (task, generator, batch) -> (x, y, mask), and the fixed evaluation sets.

Each task generates its own (`task.batch`, `task.sequences`: src/datamodules/tasks/), a whole batch
with tensor ops on the generator's device, nothing looping per sample. x holds what the model
reads, y the targets, mask marks the targets that count (False e.g. for label-framing steps t < lag,
whose source lies before the stream).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from src.datamodules.tasks import Task

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def make_batch(task: Task, gen: torch.Generator, batch: int) -> Batch:
    """One batch of independent samples for a stateless task."""
    return task.batch(gen, batch)


def generator(device: torch.device | str, *key: int) -> torch.Generator:
    """A generator seeded from a tuple of ints (seed, stage, rank, block...): distinct tuples give
    independent streams, the same tuple the same stream, on any device."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1))
    return gen


def make_split(task: Task, seed: int, size: int, device: torch.device | str = "cpu") -> Batch:
    """A fixed evaluation set (validation or test) of `size` samples drawn from its own seed.

    For stateful label tasks a sample is a whole fresh sequence of `seq_len` steps, evaluated from a
    reset state, which is exactly what a stateful model meets after each reset. Stateful windows:
    `size` windows rounded up to whole sequences of `rows_per_sequence`, in order, which the
    datamodule serves in the training layout (src/datamodules/sequence_datamodule.py).
    """
    gen = generator(device, seed, 1)
    if task.stateful_windows:  # whole sequences, rows (sequence, window) in order
        return make_batch(task, gen, math.ceil(size / task.rows_per_sequence) * task.rows_per_sequence)
    if task.stateful:
        return task.sequences(gen, size)
    return make_batch(task, gen, size)
