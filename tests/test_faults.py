"""Faults: a non-finite loss, a disk that fills up, a folder that cannot be written, Ctrl-C. Each
stops with one clear sentence, keeps the last good checkpoint and says in metrics.json why."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from src.launch import RunFailed
from src.reliability import NonFiniteLoss
from src.run import train
from src.schema import ConfigError
from tests.conftest import FAST, make_cfg
from tests.run_helpers import read_metrics, start_cli, wait_for_file

BUDGET = ["hardware.threads=1", "callbacks.target_reached.target=null", "trainer.max_epochs=1"]


def test_non_finite_loss_stops_before_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # plain SGD with lr=10 on the regression task: the loss overflows to inf within ~10 steps
    cfg = make_cfg(
        tmp_path, *BUDGET, "task=arithmetic", "optim.optimizer._target_=torch.optim.SGD", "optim.optimizer.lr=10",
        "optim.grad_clip=null", "callbacks.last_checkpoint.every_n_train_steps=2",
    )  # fmt: skip
    with pytest.raises(NonFiniteLoss) as err:
        train(cfg)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    message = str(err.value)
    assert message.startswith("train/loss became inf at step ") or message.startswith("train/loss became nan at ")
    assert f"the run stopped before the optimizer step, the last good checkpoint is {last}" in message
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    stopped_at = int(message.split(" at step ")[1].split(" ")[0])
    assert 0 < ckpt["global_step"] <= stopped_at
    assert read_metrics(run) == {"status": "failed", "error": message, "step": stopped_at, "checkpoint": str(last)}


def test_disk_full_while_checkpointing_is_a_clear_failure(tmp_path):
    # a real ENOSPC: the checkpoint's temporary file is a link to /dev/full
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    (ckpts / "last.ckpt.tmp").symlink_to("/dev/full")
    cfg = make_cfg(
        tmp_path, *BUDGET, "callbacks.model_checkpoint=null", f"callbacks.last_checkpoint.dirpath={ckpts}",
        "callbacks.last_checkpoint.every_n_train_steps=5",
    )  # fmt: skip
    with pytest.raises(RunFailed) as err:
        train(cfg)
    assert str(err.value) == (
        f"writing {ckpts / 'last.ckpt'} failed: No space left on device (errno 28); free space or point "
        "paths.output_dir at a writable disk; the last complete checkpoint is none."
    )
    assert not (ckpts / "last.ckpt").exists() and not (ckpts / "last.ckpt.tmp").exists()  # no partial file
    assert read_metrics(tmp_path / "run")["status"] == "failed"


def test_an_output_folder_that_cannot_be_created_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # root ignores chmod; a path under a file fails for everyone
    cfg = make_cfg(tmp_path, *FAST)
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert str(err.value) == (
        f"paths.output_dir={blocker / 'run'} cannot be created: {blocker} is a file, not a folder; choose another folder."
    )
    assert blocker.read_text() == "not a folder"


def test_ctrl_c_ends_cleanly_with_a_checkpoint_and_status_interrupted(tmp_path):
    proc = start_cli(
        *FAST, *BUDGET, "trainer.max_epochs=100", "callbacks.last_checkpoint.every_n_train_steps=20", cwd=tmp_path
    )
    wait_for_file("outputs/runs/*/checkpoints/last.ckpt", tmp_path, proc)
    os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err
    run = next((tmp_path / "outputs" / "runs").iterdir())
    last = run / "checkpoints" / "last.ckpt"
    metrics = read_metrics(run)
    assert metrics == {"status": "interrupted", "signal": "SIGINT", "step": metrics["step"], "checkpoint": str(last)}
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == metrics["step"] > 0
    assert f"interrupted: SIGINT at step {metrics['step']}; checkpoint {last}; continue with: python train.py" in err
