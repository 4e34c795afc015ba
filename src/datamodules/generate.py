"""Pure, vectorized generation and framing: (task, generator, batch) -> (x, y, mask).

Every function builds a whole batch with tensor ops on the requested device; nothing loops per
sample. x holds the observations the model reads (integers), y the integer targets, mask marks the
targets that count (False for label-framing steps t < lag, whose source lies before the stream, and
for window targets whose source is a pad symbol).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from src.config import Task

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def uniform(gen: torch.Generator, shape: tuple[int, ...], vocab: int) -> torch.Tensor:
    """i.i.d. integers in [0, vocab): (shape) long, on the generator's device."""
    return torch.randint(vocab, shape, generator=gen, device=gen.device)


def arithmetic(gen: torch.Generator, batch: int, length: int, task: Task) -> torch.Tensor:
    """Progressions start + step * t, start uniform in [start_low, start_high]: (batch, length) long."""
    start = torch.randint(task.start_low, task.start_high + 1, (batch, 1), generator=gen, device=gen.device)
    return start + task.step * torch.arange(length, device=gen.device)


def transform(task: Task, source: torch.Tensor) -> torch.Tensor:
    """Apply the task's transform f to the source observations of the targets."""
    if task.transform == "invert":
        return (task.vocab - 1) - source  # 1 - x for bits
    return source


def frame_windows(task: Task, gen: torch.Generator, batch: int) -> Batch:
    """Window framing: x (batch, context), y (batch, out_len), mask (batch, out_len).

    Windows are cut from fresh sequences of `windows_per_sequence + context - 1` observations with a
    stride of one (the tutorials' shift-and-drop framing); consecutive rows come from one sequence,
    in order, so a block of whole sequences can be served as consecutive batches. With pad_start the
    sequence is first left-padded with context - 1 pad symbols (index `vocab`), which keeps the
    incomplete windows at its start (`rows_per_sequence` rows a sequence), and a target whose source
    is a pad is masked (and set to 0): mask = x[:, c-lag-k : c-lag] != vocab. Otherwise mask is all True.
    """
    c = task.context
    if task.stream == "arithmetic":
        x = arithmetic(gen, batch, c, task)
    else:
        n_seq = math.ceil(batch / task.rows_per_sequence)
        seq = uniform(gen, (n_seq, task.windows_per_sequence + c - 1), task.vocab)
        if task.pad_start:
            seq = torch.cat([seq.new_full((n_seq, c - 1), task.vocab), seq], dim=1)
        x = seq.unfold(1, c, 1).reshape(-1, c)[:batch]
    y = window_targets(task, x)
    mask = observed(task, x)
    return x, y.masked_fill(~mask, 0), mask


def observed(task: Task, x: torch.Tensor) -> torch.Tensor:
    """Which targets of windows x (batch, context) have their source in the sequence rather than in
    its start padding: (batch, out_len) bool, all True without pad_start."""
    if not task.pad_start:
        return torch.ones(x.shape[0], task.out_len, dtype=torch.bool, device=x.device)
    c, k, lag = task.context, task.out_len, task.lag
    return x[:, c - lag - k : c - lag] != task.vocab


def window_targets(task: Task, x: torch.Tensor) -> torch.Tensor:
    """Targets of windows x (batch, context): (batch, out_len). arithmetic: the value after the
    window (the last one plus `step`); otherwise f of the target block ending `lag` steps before
    the newest observation."""
    if task.transform == "next":
        return x[:, -1:] + task.step
    c, k, lag = task.context, task.out_len, task.lag
    return transform(task, x[:, c - lag - k : c - lag])


def label_targets(task: Task, x: torch.Tensor) -> Batch:
    """Label framing over fresh sequences x (batch, T): y_t = f(x_{t-lag}), steps t < lag masked."""
    b, t = x.shape
    lag = task.lag
    source = torch.cat([x.new_zeros(b, lag), x[:, : t - lag]], dim=1) if lag else x
    mask = (torch.arange(t, device=x.device) >= lag).expand(b, t).contiguous()
    return x, transform(task, source), mask


def make_batch(task: Task, gen: torch.Generator, batch: int) -> Batch:
    """One batch of independent samples for a stateless task (window or label framing)."""
    if hasattr(task, "batch"):  # a task family generates its own (src/datamodules/tasks/)
        return task.batch(gen, batch)
    if task.framing == "window":
        return frame_windows(task, gen, batch)
    return label_targets(task, uniform(gen, (batch, task.context), task.vocab))


def generator(device: torch.device | str, *key: int) -> torch.Generator:
    """A generator seeded from a tuple of ints (seed, stage, rank, block...): distinct tuples give
    independent streams, the same tuple the same stream, on any device."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1))
    return gen


def make_split(task: Task, seed: int, size: int, device: torch.device | str = "cpu") -> Batch:
    """A fixed evaluation set (validation or test) of `size` samples drawn from its own seed.

    For stateful tasks a sample is a whole fresh sequence of `seq_len` steps, evaluated from a
    reset state, which is exactly what a stateful model meets after each reset.
    """
    gen = generator(device, seed, 1)
    if task.stateful:
        return label_targets(task, uniform(gen, (size, task.seq_len), task.vocab))
    return make_batch(task, gen, size)
