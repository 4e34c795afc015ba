"""Every task and cell trains for real on a tiny budget and beats chance by a wide margin."""

from __future__ import annotations

import json

import pytest

from src.run import train

BUDGET = ["trainer.max_epochs=1", "data.batches_per_epoch=300", "callbacks.target_reached.consecutive=1"]

# (task, model, cell): the three cells on each echo task, encoder-decoders on the partial echo.
CASES = [(t, c, c) for t in ("echo_current", "echo_lag", "echo_sequence") for c in ("rnn", "lstm", "gru")]
CASES += [("partial_echo", "encdec", c) for c in ("rnn", "lstm", "gru")]


@pytest.mark.parametrize(("task", "model", "cell"), CASES)
def test_every_task_and_cell_learns(cfg_factory, tmp_path, task, model, cell):
    cfg = cfg_factory(f"task={task}", f"model={model}", f"model.cell={cell}", *BUDGET)
    metrics, _ = train(cfg)
    chance = metrics["chance"]["acc"]
    assert chance == pytest.approx(0.01)
    assert metrics["test/acc"] > 0.5, metrics  # 50x chance after at most 300 steps
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test/acc"] == metrics["test/acc"]
    assert saved["cell"] == cell


def test_default_echo_lag_solves_and_stops_early(cfg_factory):
    metrics, _ = train(cfg_factory())
    assert metrics["test/exact"] == 1.0
    assert metrics["target"]["reached"]
    assert metrics["steps"] < 1000  # stopped at the target, not at the 10,000-batch budget


@pytest.mark.parametrize("encoding", ["embedding", "onehot"])
def test_input_encodings_learn(cfg_factory, encoding):
    metrics, _ = train(cfg_factory("task=echo_lag", f"task.encoding={encoding}", *BUDGET))
    assert metrics["test/acc"] > 0.9


def test_scalar_encoding_trains_on_scaled_values(cfg_factory):
    # A scalar input must be decoded from one number: harder, but far above chance.
    metrics, _ = train(
        cfg_factory("task=echo_current", "task.encoding=scalar", "task.scale=100", "task.vocab=10", *BUDGET)
    )
    assert metrics["test/acc"] > 0.5  # chance 0.1


def test_arbitrary_valid_overrides(cfg_factory):
    cfg = cfg_factory("task=echo_lag", "task.lag=3", "task.context=8", "task.vocab=20", "model=gru", *BUDGET)
    metrics, _ = train(cfg)
    assert metrics["chance"]["acc"] == pytest.approx(0.05)
    assert metrics["test/acc"] > 0.5


def test_partial_echo_with_rnn_encdec_and_longer_block(cfg_factory):
    cfg = cfg_factory("task=partial_echo", "task.out_len=3", "task.lag=1", "model=encdec", "model.cell=rnn", *BUDGET)
    metrics, objects = train(cfg)
    assert objects["module"].net.out_len == 3
    assert metrics["test/acc"] > 0.3  # chance 0.01


def test_overfit_debug_drives_train_loss_down(cfg_factory):
    cfg = cfg_factory("debug=overfit", "trainer.max_epochs=1")
    metrics, objects = train(cfg)
    assert metrics["train/loss"] < 0.5  # ln(100) = 4.6 at start: the 2 cycled batches are memorised
    assert metrics["test/loss"] > metrics["train/loss"]  # and nothing general was learnt from them
