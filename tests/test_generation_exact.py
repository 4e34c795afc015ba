"""Generation gives exactly the targets each framing defines (design.md's vocabulary), checked on
tiny inputs worked out by hand, then on small seeded batches of the real generators.

Every hand-built input has distinct neighbouring values, so a target one step early or late (a lag
off by one, a block shifted, a recall window starting a step too soon) fails the assertion: shifting
a task's `targets` (src/datamodules/tasks/) by one step fails every test here.
Masked targets are compared as -1: their value is nobody's business.
"""

from __future__ import annotations

import torch

from src.datamodules.generate import generator, make_batch, make_split
from src.datamodules.sequence_datamodule import TrainStream
from src.datamodules.tasks import make_task


def window_targets(task, x):
    """The targets of windows x: (batch, out_len) (the task's own `targets`)."""
    return task.targets(x)[0]


def label_targets(task, x):
    """x and its label-framing targets and mask (the task's own `targets`)."""
    return (x, *task.targets(x))


T = torch.tensor


def echo(**fields) -> object:
    return make_task({"name": "t", "stream": "uniform", "vocab": 100, **fields})


def seen(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The targets that count, masked ones as -1."""
    return torch.where(mask, y, torch.full_like(y, -1))


def seeded(task, batch: int = 6):
    return make_batch(task, generator("cpu", 0, 0), batch)


# -- window framing: the out_len block ending `lag` steps before the newest observation ------------
def test_echo_current_is_the_newest_observation():
    task = echo(context=3, lag=0, out_len=1)
    assert torch.equal(window_targets(task, T([[11, 12, 13], [21, 22, 23]])), T([[13], [23]]))
    x, y, mask = seeded(task)
    assert torch.equal(y, x[:, 2:3]) and mask.all()
    # the tutorial's S1: a window of one step, its own target
    x, y, _ = seeded(echo(context=1, lag=0, out_len=1))
    assert x.shape == y.shape == (6, 1) and torch.equal(y, x)


def test_echo_lag_one_is_the_observation_before_the_newest():
    task = echo(context=5, lag=1, out_len=1)
    assert torch.equal(window_targets(task, T([[10, 11, 12, 13, 14], [29, 28, 27, 26, 25]])), T([[13], [26]]))
    x, y, mask = seeded(task)
    assert torch.equal(y, x[:, 3:4]) and mask.all()


def test_echo_sequence_and_partial_echo_are_blocks_of_out_len():
    x = T([[10, 11, 12, 13, 14]])
    assert torch.equal(window_targets(echo(context=5, lag=0, out_len=5), x), x)  # the whole window
    assert torch.equal(window_targets(echo(context=5, lag=3, out_len=2), x), T([[10, 11]]))  # S5: 2 oldest
    assert torch.equal(window_targets(echo(context=5, lag=1, out_len=3), x), T([[11, 12, 13]]))
    x, y, mask = seeded(echo(context=5, lag=3, out_len=2))
    assert y.shape == mask.shape == (6, 2) and torch.equal(y, x[:, :2]) and mask.all()


def test_windows_of_one_sequence_slide_by_one_step():
    """windows_per_sequence > 1: consecutive rows are the windows of one sequence, stride one."""
    x, y, _ = seeded(echo(context=4, lag=1, out_len=1, windows_per_sequence=3))
    for first in (0, 3):
        rows = x[first : first + 3]
        assert torch.equal(rows[1:, :-1], rows[:-1, 1:])
    assert torch.equal(y, x[:, 2:3])


def test_invert_is_vocab_minus_one_minus_the_source():
    bits = echo(vocab=2, context=4, lag=0, out_len=4, framing="label", transform="invert")
    assert torch.equal(seen(*label_targets(bits, T([[0, 1, 1, 0]]))[1:]), T([[1, 0, 0, 1]]))
    ten = echo(vocab=10, context=3, lag=1, out_len=1, transform="invert")
    assert torch.equal(window_targets(ten, T([[1, 2, 3]])), T([[7]]))  # 9 - x_{t-1}
    x, y, mask = seeded(bits)
    assert torch.equal(y, 1 - x) and mask.all()


def test_arithmetic_next_is_the_value_after_the_window():
    task = make_task({"name": "a", "stream": "arithmetic", "context": 3, "lag": 0, "out_len": 1,
                      "transform": "next", "encoding": "scalar", "objective": "regression", "scale": 100.0,
                      "step": 10, "start_low": 0, "start_high": 99})  # fmt: skip
    assert torch.equal(window_targets(task, T([[50, 60, 70], [3, 13, 23]])), T([[80], [33]]))
    x, y, mask = seeded(task)
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.full((6, 2), 10)) and ((x[:, 0] >= 0) & (x[:, 0] <= 99)).all()
    assert torch.equal(y, x[:, -1:] + 10) and mask.all()


# -- label framing: y_t = f(x_{t-lag}), steps t < lag masked ------------------------------------
def test_label_framing_with_lag_masks_the_first_steps():
    task = echo(context=5, lag=2, out_len=5, framing="label")
    x = T([[11, 12, 13, 14, 15], [25, 24, 23, 22, 21]])
    xx, y, mask = label_targets(task, x)
    assert torch.equal(xx, x)
    assert torch.equal(mask, T([[False, False, True, True, True]] * 2))
    assert torch.equal(seen(y, mask), T([[-1, -1, 11, 12, 13], [-1, -1, 25, 24, 23]]))
    x, y, mask = seeded(task)
    assert torch.equal(seen(y, mask)[:, 2:], x[:, :3]) and not mask[:, :2].any()


def test_the_stateful_stream_labels_across_chunks_and_resets_each_sequence():
    """echo_lag_online's stream: a fresh sequence of seq_len steps per block, served in chunks of
    `chunk` steps with the reset flag on the first; the target of a chunk's first step is the last
    observation of the chunk before, and only the first `lag` steps of a sequence are masked."""
    task = echo(context=6, seq_len=6, lag=1, out_len=6, framing="label", stateful=True, chunk=2)
    _, y, mask = label_targets(task, T([[5, 6, 7, 8, 9, 0]]))
    assert torch.equal(seen(y, mask), T([[-1, 5, 6, 7, 8, 9]]))
    stream = TrainStream(task, batch=3, start=0, length=6, seed=0, rank=0, device="cpu")
    chunks = [stream.get(k) for k in range(6)]  # two sequences of three chunks
    assert [c[3] for c in chunks] == [True, False, False, True, False, False]
    assert all(c[0].shape == (3, 2) for c in chunks)
    for seq in (chunks[:3], chunks[3:]):
        x, y, mask = (torch.cat([c[i] for c in seq], 1) for i in range(3))
        assert torch.equal(seen(y, mask), torch.cat([torch.full((3, 1), -1), x[:, :-1]], 1))
    assert not torch.equal(chunks[0][0], chunks[3][0])  # each block a fresh sequence
    # held out: whole sequences from a reset state, labelled the same way
    x, y, mask = make_split(task, seed=1, size=4)
    assert x.shape == (4, 6) and torch.equal(seen(y, mask), torch.cat([torch.full((4, 1), -1), x[:, :-1]], 1))


# -- the memory benchmarks: each family's targets(x) on a hand-built x, and its batches -----------
def test_copy_memory_recalls_the_symbols_after_the_delimiter():
    task = make_task({"family": "copy_memory", "delay": 3, "symbols": 2, "categories": 4})
    x = T([[2, 3, 0, 0, 5, 0, 0]])  # symbols 2 3, T - 1 = 2 blanks, delimiter 5, 2 blanks
    y, mask = task.targets(x)
    assert torch.equal(mask, T([[False] * 5 + [True] * 2]))
    assert torch.equal(seen(y, mask), T([[-1, -1, -1, -1, -1, 2, 3]]))
    assert torch.equal(y, T([[0, 0, 0, 0, 0, 2, 3]]))  # blanks before the recall: the loss counts them
    x, y, mask = seeded(task)
    assert ((x[:, :2] >= 1) & (x[:, :2] <= 4)).all() and (x[:, 4] == 5).all()
    assert (x[:, 2:4] == 0).all() and (x[:, 5:] == 0).all()
    assert torch.equal(y[:, 5:], x[:, :2]) and (y[:, :5] == 0).all() and torch.equal(mask, task.targets(x)[1])


def test_adding_sums_the_two_marked_values():
    task = make_task({"family": "adding", "length": 4})
    values, marker = T([[0.125, 0.25, 0.5, 1.0]]), T([[0.0, 1.0, 0.0, 1.0]])
    y, mask = task.targets(torch.stack([values, marker], -1))
    assert torch.equal(y, T([[1.25]])) and torch.equal(mask, T([[True]]))
    x, y, mask = seeded(task)
    m = x[..., 1]
    assert torch.equal(m[:, :2].sum(1), torch.ones(6)) and torch.equal(m[:, 2:].sum(1), torch.ones(6))
    torch.testing.assert_close(y[:, 0], (x[..., 0] * m).sum(1), rtol=0, atol=0)
    assert mask.all()


def test_selective_copy_recalls_the_scattered_symbols_in_order():
    task = make_task({"family": "selective_copy", "length": 3, "n_tokens": 2, "categories": 4})
    x = T([[0, 2, 0, 4, 0, 5, 0, 0]])  # span of 5 with symbols 2 and 4, delimiter 5, 2 blanks
    y, mask = task.targets(x)
    assert torch.equal(y, T([[2, 4]])) and mask.all()
    assert torch.equal(task.targets(T([[3, 0, 0, 0, 1, 5, 0, 0]]))[0], T([[3, 1]]))
    x, y, mask = seeded(task)
    span = x[:, :5]
    assert torch.equal((span > 0).sum(1), torch.full((6,), 2)) and (x[:, 5] == 5).all() and (x[:, 6:] == 0).all()
    assert torch.equal(y, span[span > 0].view(6, 2)) and mask.all()


def test_associative_recall_answers_each_query_with_its_value():
    task = make_task({"family": "associative_recall", "n_pairs": 2, "n_queries": 2, "keys": 4, "values": 4})
    x = T([[1, 5, 3, 7, 3, 1]])  # pairs (1, 5), (3, 7); queries 3, 1
    y, mask = task.targets(x)
    assert torch.equal(y, T([[7, 5]])) and mask.all()
    x, y, mask = seeded(task)
    keys, values, queries = x[:, 0:4:2], x[:, 1:4:2], x[:, 4:]
    assert (keys < 4).all() and (values >= 4).all() and (keys[:, 0] != keys[:, 1]).all()
    assert (queries[:, 0] != queries[:, 1]).all()
    expected = torch.where(queries == keys[:, :1], values[:, :1], values[:, 1:])
    assert torch.equal(y, expected) and mask.all()
