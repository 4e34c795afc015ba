"""Extreme but well-typed values end in a sentence that names the real bound, or work: never a
framework traceback mid-run (Lightning's len(), a reshape of an empty batch, a fork per worker)."""

from __future__ import annotations

import json
import sys

import pytest

from src.hardware import cores
from src.run_config import validate
from src.schema import ConfigError
from tests.conftest import run_cli

FAST = ("debug=fast", "hardware.threads=1", "logger=none")


def test_the_epoch_length_bound_is_lightnings_own(tmp_path):
    """2**63 is refused (data rows of docs/bad_input.md); one less is Lightning's real bound and trains."""
    run = tmp_path / "run"
    res = run_cli(*FAST, f"data.batches_per_epoch={sys.maxsize}", "trainer.max_steps=10", f"hydra.run.dir={run}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 10


def test_one_to_one_without_samples_completes(tmp_path):
    """samples=0 asked for an empty sample table, and one_to_one's reshape of an empty batch
    crashed after training, recording a finished run as failed."""
    run = tmp_path / "run"
    res = run_cli(*FAST, "model.topology=one_to_one", "samples=0", f"hydra.run.dir={run}")
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["topology"] == "one_to_one"


# Found hunting the numeric keys for their real bounds (issue 21, classes 7 and 9): each is refused
# with the bound named. (override list, the sentence's start)
HUNTED = [
    # a DataLoader worker is a process: thousands would fork thousands of torch processes
    (["data.num_workers=1000"], f"data.num_workers=1000 exceeds the {cores()} CPU cores this process may use"),
    # each CPU rank loads torch and Lightning before any data: 100,000 of them do not fit anywhere
    (
        [
            "hardware=ddp",
            "hardware.devices=100000",
            *(f"data.{k}=100000" for k in ("batch_size", "val_size", "test_size")),
        ],
        "hardware.devices=100000 starts 100000 processes of about 0.45 GB each",
    ),
    (["+trainer.min_epochs=21"], "trainer.min_epochs=21 exceeds trainer.max_epochs=20, which stops training first"),
    (["trainer.max_steps=10", "+trainer.min_steps=11"], "trainer.min_steps=11 exceeds the training budget of 10 steps"),
    (["trainer.deterministic=1"], "trainer.deterministic=1 is not allowed; choose one of: true, false, warn."),
    (["optim.optimizer.lr=1e-400"], "optim.optimizer.lr=0.0 is not allowed; it must be a number > 0 and <= 10"),
    # class 9, a message names the real rule: under DDP at least one sample per process, not '>= 1'
    (["hardware=ddp", "data.val_size=0"], "data.val_size=0 is smaller than the 2 processes that share it."),
    (
        ["hardware.threads=0"],
        f"hardware.threads=0 is not allowed; use null (torch's default) or an integer from 1 to {cores()}",
    ),
    (["optim.optimizer.lr=inf"], "optim.optimizer.lr=inf is not allowed; it must be a number > 0 and <= 10"),
]


@pytest.mark.parametrize(("overrides", "start"), HUNTED, ids=[" ".join(o) for o, _ in HUNTED])
def test_hunted_extremes_are_refused_with_their_bound(cfg_factory, overrides, start):
    with pytest.raises(ConfigError) as err:
        validate(cfg_factory(*overrides))
    assert str(err.value).startswith(start), str(err.value)
