"""task.pad_start (the tutorials' "Mask Missing Data" and "Entire Sequence as Timesteps"): the
incomplete windows at the start of a sequence are kept, their missing observations are the pad
symbol (index vocab), and a target whose source is a pad is masked out of loss, metrics and chance."""

from __future__ import annotations

import pytest
import torch

from predict import parse_values, predict
from src.datamodules.generate import generator, make_batch
from src.datamodules.tasks import make_task
from src.lit_models.sequence_module import chance_levels
from src.models.recurrent import InputEncoder
from src.run import train
from src.schema import ConfigError

BUDGET = ["trainer.max_epochs=1", "data.batches_per_epoch=300", "callbacks.target_reached.consecutive=1"]
P = 10  # the pad symbol of a vocabulary of 10


def test_pad_framing_keeps_the_first_windows_and_masks_their_padded_targets():
    task = make_task({"vocab": 10, "context": 3, "lag": 1, "pad_start": True, "windows_per_sequence": 2})
    assert task.rows_per_sequence == 4 and task.alphabet == 11
    x, y, mask = make_batch(task, generator("cpu", 0), 8)
    (a, b, c, d), (e, f, g, h) = task.uniform(generator("cpu", 0), (2, 4)).tolist()  # the two sequences
    assert x.tolist() == [[P, P, a], [P, a, b], [a, b, c], [b, c, d], [P, P, e], [P, e, f], [e, f, g], [f, g, h]]
    # y_t = x_{t-1}: the first window's source is a pad, so its target is masked (and 0)
    assert y.tolist() == [[0], [a], [b], [c], [0], [e], [f], [g]]
    assert mask.tolist() == [[False], [True], [True], [True]] * 2
    shifted = x[:, -1:].masked_fill(~mask, 0)  # the newest observation: a target off by one step
    assert not torch.equal(y, shifted)


def test_pad_framing_of_a_block_masks_each_target_on_its_own():
    task = make_task({"vocab": 10, "context": 3, "lag": 0, "out_len": 2, "pad_start": True})
    x, y, mask = make_batch(task, generator("cpu", 1), 3)
    ((a, b, c),) = task.uniform(generator("cpu", 1), (1, 3)).tolist()
    assert x.tolist() == [[P, P, a], [P, a, b], [a, b, c]]
    assert y.tolist() == [[0, a], [a, b], [b, c]]
    assert mask.tolist() == [[False, True], [True, True], [True, True]]


def test_chance_counts_only_the_unmasked_targets():
    # partial echo with pad_start: per sequence of 5 windows the targets x[0:2] are observed in
    # 0, 0, 0, 1 and 2 of them; exact chance is the mean of 100^-1 and 100^-2 over the last two rows
    task = make_task({"vocab": 100, "context": 5, "lag": 3, "out_len": 2, "pad_start": True})
    _, y, mask = make_batch(task, generator("cpu", 2), 500)
    assert mask.sum(1).tolist()[:5] == [0, 0, 0, 1, 2]
    chance = chance_levels(task, y, mask)
    assert chance["exact"] == pytest.approx((1e-2 + 1e-4) / 2)
    assert chance["acc"] == pytest.approx(0.01)


def test_pad_symbol_has_its_own_input():
    onehot = InputEncoder("onehot", 3, 16, 1.0, pad=True)  # vocab 3: symbol 3 is the pad
    assert onehot.size == 4
    assert onehot(torch.tensor([[3, 2]]))[0].tolist() == [[0, 0, 0, 1], [0, 0, 1, 0]]
    scalar = InputEncoder("scalar", 3, 16, 2.0, pad=True)  # data in [0, 1], the pad -1: outside it
    assert scalar(torch.tensor([[3, 0, 2]]))[0, :, 0].tolist() == [-1.0, 0.0, 1.0]
    embedding = InputEncoder("embedding", 3, 5, 1.0, pad=True)
    assert embedding.embed.num_embeddings == 4


def test_pad_start_trains_well_above_chance(cfg_factory):
    metrics, objects = train(cfg_factory("task=echo_lag", "task.pad_start=true", *BUDGET))
    assert objects["module"].net.encoder.size == 101  # 100 symbols and the pad
    assert metrics["chance"]["exact"] == pytest.approx(0.01)  # windows without a target do not count
    assert metrics["test/acc"] > 0.9, metrics
    # out_len 1: exact match over the windows with a target is their accuracy; counting the fifth
    # of windows without one as matched would lift exact above it
    assert metrics["test/exact"] == pytest.approx(metrics["test/acc"])
    # predict.py reads the start of a sequence: fewer values than the context, left-padded
    task, net = objects["module"].task, objects["module"].net.cpu()
    assert predict(task, net, parse_values(task, ["5", "7"]))["expected"] == [5]
    assert predict(task, net, parse_values(task, ["5"]))["expected"] == [None]  # its source is a pad
    with pytest.raises(ConfigError, match="type 1 to 5"):
        parse_values(task, ["1"] * 6)


@pytest.mark.parametrize(
    ("task", "model", "acc"),
    [("echo_lag", "lstm", 0.3), ("echo_sequence", "lstm", 0.2), ("partial_echo", "encdec", 0.05)],
)
def test_scalar_regression_echo_with_pad_learns(cfg_factory, task, model, acc):
    # the tutorial's "Linear Representation": integers scaled to [0, 1) in, one regression output per
    # target; the pad is the scalar -1. Chance acc is about 0.01 (the mean, rounded, hits 1 in 100).
    overrides = ["task.encoding=scalar", "task.objective=regression", "task.scale=100", "task.pad_start=true"]
    metrics, objects = train(cfg_factory(f"task={task}", f"model={model}", *overrides, *BUDGET))
    assert objects["module"].net.encoder.size == 1
    assert metrics["test/mse"] < metrics["chance"]["mse"] / 20, metrics
    assert metrics["test/acc"] > acc, metrics


def test_training_stream_serves_whole_padded_sequences_in_order():
    # 3 windows a sequence (context 3, one whole window) in batches of 2: a block of 3 batches holds
    # 2 whole sequences, so the stream reaches every window of a sequence, not only its padded start
    from src.datamodules.sequence_datamodule import TrainStream

    task = make_task({"vocab": 10, "context": 3, "lag": 1, "pad_start": True})
    stream = TrainStream(task, batch=2, start=0, length=3, seed=0, rank=0, device="cpu")
    x = torch.cat([b[0] for b in stream])
    pads = (x == P).sum(1).tolist()
    assert pads == [2, 1, 0, 2, 1, 0]
