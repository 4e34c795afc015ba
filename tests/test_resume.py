"""Resume and determinism: a run killed with SIGKILL mid-epoch and resumed with ckpt_path=last
ends, in its own folder, with the metrics of an uninterrupted run; identical runs are identical."""

from __future__ import annotations

import signal

import pytest
import torch
from omegaconf import OmegaConf

from src.run import train
from tests.conftest import FAST, make_cfg, run_cli
from tests.run_helpers import comparable, read_metrics, start_cli, wait_for_file

# The whole budget (no early stop), 4 epochs of 100 batches, last.ckpt every 30 steps: a kill
# after the first checkpoint lands inside an epoch, between validations.
BUDGET = [
    "hardware.threads=1",
    "callbacks.target_reached.target=null",
    "trainer.max_epochs=4",
    "data.batches_per_epoch=100",
    "callbacks.last_checkpoint.every_n_train_steps=30",
]
# the stateful task also carries the recurrent state and its stream position inside a sequence
STATEFUL = ["task=echo_lag_online", "model.tbptt=2", "trainer.max_epochs=2"]
# stateful windows (Keras' row-to-row carry): 20 windows a sequence in batches of 5, so a
# checkpoint every 30 steps lands inside a sequence, with a carried state (issue 11)
STATEFUL_WINDOWS = ["task.stateful=true", "task.windows_per_sequence=20", "data.batch_size=5", "trainer.max_epochs=2"]


def test_identical_runs_give_identical_metrics(tmp_path):
    a, _ = train(make_cfg(tmp_path / "a", *BUDGET))
    b, _ = train(make_cfg(tmp_path / "b", *BUDGET))
    assert comparable(a) == comparable(b)
    assert a["steps"] == 400 and a["fit_time_s"] != b["fit_time_s"]  # timings are real, hence left out


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="stateless"),
        # the carried recurrent state survives the kill too; slow (~15 s): the stateless kill runs by default
        pytest.param(STATEFUL, id="stateful", marks=pytest.mark.slow(reason="~15 s; CI time")),
        # slow: three more runs (~55 s on the shared 2-core machine); the carried state is checkpointed by
        # the same code as the label streams above, which run by default
        pytest.param(STATEFUL_WINDOWS, id="stateful_windows", marks=pytest.mark.slow(reason="~55 s of runs")),
    ],
)
def test_sigkill_then_resume_last_ends_like_an_uninterrupted_run(tmp_path, extra):
    overrides = [*FAST, *BUDGET, *extra]
    whole, _ = train(make_cfg(tmp_path / "whole", *overrides))

    proc = start_cli(*overrides, cwd=tmp_path)
    ckpt = wait_for_file("outputs/runs/*/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    run = ckpt.parent.parent
    killed_at = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < killed_at < whole["steps"] and killed_at % 100  # inside an epoch
    assert not (run / "metrics.json").exists()

    config = (run / ".hydra" / "config.yaml").read_text()
    res = run_cli("ckpt_path=last", cwd=tmp_path)  # the run's saved config is trained
    assert res.returncode == 0, res.stderr
    assert [p.name for p in (tmp_path / "outputs" / "runs").iterdir()] == [run.name]  # same folder
    assert (run / ".hydra" / "config.yaml").read_text() == config and not list(run.glob(".hydra_*"))
    (resume,) = OmegaConf.load(run / ".hydra" / "resumes.yaml")
    assert resume.from_step == killed_at and resume.overrides == [] and resume.checkpoint == str(ckpt)
    resumed = read_metrics(run)
    assert comparable(resumed) == comparable(whole)

    again = run_cli("ckpt_path=last", cwd=tmp_path)  # a completed run is not resumed twice
    assert again.returncode == 2 and "found no unfinished run" in again.stderr
