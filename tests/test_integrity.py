"""Runs that cannot be corrupted: every stop by a signal is recorded and exits 128 + signal, in
every phase of a run; the real CLI, as a cluster scheduler would send it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import FAST, run_cli
from tests.run_helpers import read_metrics, start_cli, wait_for_file

# 120 steps, a validation every 40, last.ckpt every 10 steps: a few seconds of training
BUDGET = [
    *FAST,
    "hardware.threads=1",
    "callbacks.target_reached.target=null",
    "trainer.max_steps=120",
    "trainer.val_check_interval=40",
    "callbacks.last_checkpoint.every_n_train_steps=10",
    "+callbacks.phase._target_=tests.test_integrity.PhaseMarker",
]


class PhaseMarker(pl.Callback):
    """Marks the run folder when a phase starts (`.phase_<name>`) and lingers there a second the
    first time, so a test can send a signal inside that phase."""

    def _mark(self, trainer: pl.Trainer, phase: str) -> None:
        mark = Path(trainer.default_root_dir) / f".phase_{phase}"
        if not mark.exists():
            mark.touch()
            time.sleep(1.5)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark(trainer, "validation")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark(trainer, "test")


# moment -> the file whose appearance means the run is there
MOMENTS = {
    "startup": "outputs/runs/*/.hydra/config.yaml",  # Hydra made the folder; torch is still importing
    "training": "outputs/runs/*/checkpoints/last.ckpt",
    "validation": "outputs/runs/*/.phase_validation",
    "test": "outputs/runs/*/.phase_test",
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigterm_at_any_moment_exits_143_records_interrupted_and_resumes(tmp_path, moment):
    proc = start_cli(*BUDGET, cwd=tmp_path)
    run = wait_for_file(MOMENTS[moment], tmp_path, proc).parent
    run = run.parent if run.name in (".hydra", "checkpoints") else run
    proc.send_signal(signal.SIGTERM)  # what SLURM sends on pre-emption
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    metrics = read_metrics(run)
    assert metrics["status"] == "interrupted" and metrics["signal"] == "SIGTERM", metrics
    last = run / "checkpoints" / "last.ckpt"
    if moment == "startup":
        assert metrics["checkpoint"] is None and not last.exists()
        return
    assert metrics["checkpoint"] == str(last)
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]  # loadable
    assert step == metrics["step"] > 0
    res = run_cli("ckpt_path=last", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_metrics(run)["status"] == "completed" and read_metrics(run)["steps"] == 120


def test_a_second_sigterm_stops_at_once_and_still_exits_143(tmp_path):
    proc = start_cli(*BUDGET, cwd=tmp_path)
    run = wait_for_file("outputs/runs/*/.phase_validation", tmp_path, proc).parent
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # inside the lingering validation: no batch boundary to wait for
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert read_metrics(run)["status"] == "interrupted"
