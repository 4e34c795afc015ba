"""Every task and cell trains for real on a tiny budget and beats chance by a wide margin."""

from __future__ import annotations

import json

import pytest

from src.run import train

CELLS = ["rnn", "lstm", "gru"]


@pytest.mark.parametrize("cell", CELLS)
def test_echo_lag_every_cell_learns(cfg_factory, tmp_path, cell):
    cfg = cfg_factory("task=echo_lag", f"model={cell}", "trainer.max_epochs=1", "data.batches_per_epoch=400")
    metrics, _ = train(cfg)
    assert metrics["test/acc"] > 0.9, metrics  # chance is 0.01
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test/acc"] == metrics["test/acc"]


def test_default_echo_lag_solves(cfg_factory):
    metrics, _ = train(cfg_factory())
    assert metrics["test/exact"] == 1.0
    assert metrics["target"]["reached"]
