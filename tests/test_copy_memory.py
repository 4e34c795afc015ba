"""The copy-memory task as a unit (src/datamodules/tasks/copy_memory.py): exact tensors on a tiny
hand-checked case, its memoryless baseline checked numerically, its rules, predict, and learning."""

from __future__ import annotations

import math

import pytest
import torch

from src.datamodules.generate import generator, make_batch
from src.datamodules.tasks import make_task
from src.run import train
from src.schema import ConfigError

TINY = {"name": "copy_memory", "family": "copy_memory", "delay": 3, "symbols": 2, "categories": 4}


def test_generation_gives_the_hand_checked_tensors():
    task = make_task(TINY)  # T = 3, 2 symbols of 4: 7 steps, tokens 0 blank, 1-4 symbols, 5 delimiter
    assert (task.context, task.out_len, task.vocab) == (7, 7, 6)
    x = torch.tensor([[4, 1, 0, 0, 5, 0, 0]])
    y, mask = task.targets(x)
    assert y.tolist() == [[0, 0, 0, 0, 0, 4, 1]]
    assert mask.tolist() == [[False] * 5 + [True] * 2]
    x, y, mask = make_batch(task, generator("cpu", 0), 1000)
    assert ((x[:, :2] >= 1) & (x[:, :2] <= 4)).all()
    assert (x[:, 2:4] == 0).all() and (x[:, 4] == 5).all() and (x[:, 5:] == 0).all()
    assert torch.equal(y[:, 5:], x[:, :2]) and (y[:, :5] == 0).all()


def test_chance_is_the_memoryless_baseline_on_a_large_batch():
    """The best input-blind model predicts each step's target distribution: its cross-entropy is
    the mean entropy of those distributions, 10 ln 8 / (T + 20); its recall accuracy 1/8."""
    task = make_task({"family": "copy_memory", "delay": 5})
    _, y, mask = make_batch(task, generator("cpu", 0), 200_000)
    p = torch.stack([torch.bincount(y[:, t], minlength=task.vocab) for t in range(task.context)]).double() / len(y)
    entropy = -(p * p.clamp(min=1e-12).log()).sum(1)
    chance = task.chance()
    assert chance["loss"] == pytest.approx(10 * math.log(8) / 25)
    assert entropy.mean().item() == pytest.approx(chance["loss"], rel=1e-3)
    assert p.max(1).values[mask[0]].mean().item() == pytest.approx(chance["acc"], rel=2e-2)


def test_its_rules_live_with_it():
    with pytest.raises(ConfigError, match=r"task.lag is not a task option.*delay, family, name, symbols"):
        make_task({**TINY, "lag": 1})
    with pytest.raises(ConfigError, match=r"task.delay=0 is not allowed; it must be an integer >= 1."):
        make_task({**TINY, "delay": 0})
    from src.datamodules.tasks import names

    # the refusal lists every family file, so a new family file needs no edit here
    with pytest.raises(ConfigError, match=r"task.family=.copy. is not allowed; choose one of: ") as err:
        make_task({**TINY, "family": "copy"})
    assert str(err.value).endswith(f"choose one of: {', '.join(names())}.")


def test_predict_shows_the_recall_targets(cfg_factory):
    from predict import predict
    from src.run import build_net, validate

    task, net_kwargs, _ = validate(cfg_factory("task=copy_memory", "task.delay=3", "task.symbols=2"))
    result = predict(task, build_net(task, net_kwargs).eval(), [4, 1, 0, 0, 9, 0, 0])
    assert result["expected"] == [None] * 5 + [4, 1]
    assert len(result["predicted"]) == 7


# ~17 s; CI time (the default suite measured 618 s here): copy's learning is in the slow published
# benchmark and the copy borders (docs/border/copy); the default suite still trains copy_memory below
@pytest.mark.slow
def test_an_lstm_beats_the_baseline_quickly(cfg_factory):
    """Measured (T = 5, LSTM(50), batch 128, lr 0.01, seed 0, 600 steps, ~10 s): recall accuracy
    32.4% (chance 12.5%), loss 0.672 against the baseline 10 ln 8 / 25 = 0.832."""
    cfg = cfg_factory("task=copy_memory", "task.delay=5", "hardware.threads=1", "trainer.max_epochs=1",
                      "data.batches_per_epoch=600")  # fmt: skip
    metrics, _ = train(cfg)
    assert metrics["chance"]["loss"] == pytest.approx(10 * math.log(8) / 25)
    assert metrics["test/acc"] > 0.2
    assert metrics["test/loss"] < 0.9 * metrics["chance"]["loss"]


@pytest.mark.slow  # reason: 2,000 steps of LSTM(128) on batches of 128, 40-75 s on one thread
def test_an_lstm_solves_copy_memory_at_t5(cfg_factory):
    """Measured (T = 5, LSTM(128), the preset's batch 128, lr 0.01, seed 0, 2,000 steps, 1 thread):
    99.4% recall accuracy, 94.3% exact (batch 64: 87.4%; GRU(128) at batch 64: 99.9%); chance 12.5%."""
    cfg = cfg_factory("task=copy_memory", "task.delay=5", "model.hidden=128", "hardware.threads=1",
                      "trainer.max_epochs=1", "data.batches_per_epoch=2000", "trainer.val_check_interval=250")  # fmt: skip
    metrics, _ = train(cfg)
    assert metrics["test/acc"] > 0.9


def test_the_memory_probe_reads_the_inputs_alphabet_not_the_count_of_symbols_copied(cfg_factory):
    """copy_memory's `task.symbols` is how many symbols it copies; the probe's one-hot targets need
    the input alphabet (categories + 2). With 3 symbols of 8 the end-of-run diagnostics raised
    `Class values must be smaller than num_classes` and the run failed after its training."""
    cfg = cfg_factory("task=copy_memory", "task.delay=2", "task.symbols=3", "hardware.threads=1", "model.hidden=8",
                      "trainer.max_steps=20", "trainer.val_check_interval=10", "diagnostics=true")  # fmt: skip
    metrics, _ = train(cfg)
    memory = metrics["diagnostics"]["memory"]
    assert memory["kind"] == "accuracy" and memory["chance"] == pytest.approx(1 / 10)  # 8 symbols, blank, delimiter
    assert len(memory["delays"]) == 2 + 2 * 3  # every earlier step of the window: k = 0 .. T + 2 x 3 - 1
    # only the copied symbols vary (k = 5, 6, 7 from the last step); a blank or the delimiter is read
    # "right" by any readout and is not scored, nor counted in the capacity
    assert [k for k, s in zip(memory["delays"], memory["score"], strict=True) if s is not None] == [5, 6, 7]
    assert memory["capacity"] <= 3
