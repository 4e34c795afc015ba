"""What the terminal shows, checked where the user reads it: the printed verdict of TargetReached
under the real Lightning Trainer, the progress lines, train.log against the terminal of a real CLI
run, the weights each summary column comes from, and sweep progress on both local launchers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from src.callbacks import TargetReached
from src.run import print_summary
from tests.conftest import ROOT, run_cli


class Scripted(pl.LightningModule):
    """Trains a real (trivial) parameter; each validation logs the next value of a script."""

    def __init__(self, values: list[float]):
        super().__init__()
        self.values, self.w = values, torch.nn.Parameter(torch.ones(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        value = self.values.pop(0)
        self.log_dict({"val/exact": value, "val/loss": 1.0 if value == 0.99 else 2.0})  # val/loss lowest at 0.99

    def test_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(100, 1)), batch_size=1)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1)


def fit_scripted(values: list[float], *callbacks: pl.Callback, checkpoints: bool = False) -> pl.Trainer:
    """Validations at steps 50, 100, ..., 250 (the budget), logging `values` in turn."""
    trainer = pl.Trainer(
        max_steps=50 * len(values),
        val_check_interval=50,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=checkpoints,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(Scripted(list(values)))
    return trainer


def printed_verdict(target: TargetReached, trainer: pl.Trainer, capsys) -> str:
    metrics = {"chance": {}, "target": target.summary(), "steps": trainer.global_step, "params": 1}
    print_summary({**metrics, "wall_time_s": 0.0}, [], Path("run"))
    return next(line for line in capsys.readouterr().out.splitlines() if "target val/exact" in line)


def test_touching_the_target_without_holding_it_is_not_reached(capsys):
    target = TargetReached("val/exact", target=0.99, mode="max", consecutive=2)
    trainer = fit_scripted([0.9, 1.0, 0.98, 0.99, 0.97], target)
    assert trainer.global_step == 250  # never two in a row: the whole budget trained
    verdict = printed_verdict(target, trainer, capsys)
    assert "not reached" in verdict and "touched at step 100" in verdict, verdict
    s = target.summary()
    assert (s["reached"], s["step"], s["seconds"]) == (False, None, None)
    assert s["first_hit_step"] == 100 and s["first_hit_seconds"] > 0


def test_two_validations_in_a_row_reach_the_target_and_stop(capsys):
    from src.callbacks import Progress

    target = TargetReached("val/exact", target=0.99, mode="max", consecutive=2)
    progress = Progress("val/exact", heartbeat_s=0.0)  # a heartbeat after every batch
    trainer = fit_scripted([0.9, 1.0, 0.98, 0.99, 1.0, 0.5], target, progress)
    assert trainer.global_step == 250  # stopped at the validation that completed the streak
    out = capsys.readouterr().out.splitlines()
    val_lines = [line for line in out if "val/exact" in line]
    assert [line.split()[1] for line in val_lines] == ["50/300", "100/300", "150/300", "200/300", "250/300"]
    assert "1/2 in a row" in val_lines[1] and "0/2 in a row" in val_lines[2] and "reached" in val_lines[4]
    assert any("steps/s" in line and "train/loss" in line for line in out)  # heartbeats between them
    verdict = printed_verdict(target, trainer, capsys)
    assert "reached at step 250" in verdict and "not reached" not in verdict, verdict
    assert "first touched at step 100" in verdict
    s = target.summary()
    assert (s["reached"], s["step"], s["first_hit_step"]) == (True, 250, 100)


def test_a_checkpoint_saved_before_first_hit_was_recorded_still_loads():
    old = {"monitor": "val/exact", "mode": "max", "target": 1.0, "best": 1.0, "reached": True, "step": 100}
    target = TargetReached("val/exact", target=1.0, consecutive=2)
    target.load_state_dict({**old, "seconds": 1.5, "elapsed": 3.0, "streak": 1})
    s = target.summary()
    assert (s["reached"], s["step"], s["first_hit_step"], s["first_hit_seconds"]) == (False, None, 100, 1.5)
    new = TargetReached("val/exact", target=1.0, consecutive=2)
    new.load_state_dict(target.state_dict())
    assert new.summary() == s and new.streak == 1


def test_train_log_holds_what_the_terminal_showed(tmp_path):
    run = tmp_path / "run"
    # max_steps beyond what the one epoch holds: the banner says the epoch ends it (20 steps)
    args = [
        "debug=fast",
        "logger=none",
        "data.val_size=200",
        "samples=2",
        "trainer.max_steps=50",
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the terminal: both streams, in the order they were written
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    terminal = r.stdout.splitlines()
    assert terminal[0] == f"run folder: {run}"  # the banner comes first
    assert any(line.startswith("budget: 20 steps of 64 (1 epoch x 20 batches end it before trainer.max_steps=50;")
               for line in terminal), terminal[:8]  # fmt: skip
    assert any(line.startswith("step 10/20") and "val/exact" in line for line in terminal)
    assert (run / "train.log").read_text().splitlines() == terminal
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["weights"]["test"] == "checkpoints/best.ckpt (step 20, lowest val/loss)"
    assert metrics["weights"]["val"] == "final weights (step 20, last validation)"
    assert "  test: checkpoints/best.ckpt (step 20, lowest val/loss)" in terminal
    assert any(
        line.split() == ["metric", "test", "@", "step", "20", "val", "@", "step", "20", "chance"] for line in terminal
    )


def test_progress_false_prints_the_summary_only_and_overfit_shows_train_loss(cfg_factory, capsys):
    from src.run import train

    cfg = cfg_factory(
        "debug=overfit", "progress=false", "data.batches_per_epoch=20", "trainer.max_epochs=1",
        "trainer.val_check_interval=10", "trainer.log_every_n_steps=5",
    )  # fmt: skip
    metrics, _ = train(cfg)
    out = capsys.readouterr().out
    assert "run folder:" not in out and "val/exact" not in out.split("Sample test windows")[0]
    assert f"  train/loss {metrics['train/loss']:.4g} " in out
    # progress=false quiets the terminal, not the log: every printed line is in it, in order
    log = iter((Path(cfg.paths.output_dir) / "train.log").read_text().splitlines())
    assert all(line in log for line in out.splitlines())


# the parallel launcher's variant (~18 s) is in the slow set; the border test prints its rounds on it
@pytest.mark.parametrize("launcher", ["basic", pytest.param("parallel", marks=pytest.mark.slow)])
def test_sweep_prints_its_folder_and_jobs_done(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    budget = ["logger=none", "callbacks=none", "trainer.max_steps=5", "trainer.val_check_interval=5"]
    budget += ["data.val_size=50", "data.test_size=50", "samples=0", "hardware.threads=1", "progress=false"]
    extra = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"] if launcher == "parallel" else []
    r = run_cli("-m", "model.hidden=2,3", "task.lag=1,9", *budget, *extra, f"hydra.sweep.dir={sweep}")
    assert r.returncode == 1, r.stderr[-3000:]  # two jobs fail on purpose: -m exits 1 unless every job completed
    lines = [line for line in r.stderr.splitlines() if line.startswith("[sweep]")]
    assert lines[0] == f"[sweep] 4 jobs -> {sweep}", lines
    done = lines[1:]
    assert all(re.fullmatch(r"\[sweep\] \d/4 jobs done( \(\d failed\))? after \d+ s", d) for d in done)
    if launcher == "basic":  # one job after another: jobs 1 and 3 (lag 9 in a window of 5) fail
        counts = [d.split(" after ")[0] for d in done]
        assert counts == [
            "[sweep] 1/4 jobs done", "[sweep] 2/4 jobs done (1 failed)",
            "[sweep] 3/4 jobs done (1 failed)", "[sweep] 4/4 jobs done (2 failed)",
        ]  # fmt: skip
    else:  # two workers: two jobs can end together and count each other; that count is said once
        counts = [d.split(" after ")[0] for d in done]
        assert len(set(counts)) == len(counts) and counts[-1] == "[sweep] 4/4 jobs done (2 failed)", done


def test_testing_the_best_checkpoint_keeps_the_fits_target_record(tmp_path, capsys):
    """run.py tests best.ckpt after the fit; Lightning restores callback states from it, which
    rolled the record back to the best checkpoint's validation (here: before the target held)."""
    target = TargetReached("val/exact", target=0.99, mode="max", consecutive=2)
    best = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/loss", mode="min")
    module_trainer = fit_scripted([0.9, 0.99, 1.0, 0.5], target, best, checkpoints=True)
    assert Path(best.best_model_path).name == "best.ckpt" and target.summary()["step"] == 150
    module_trainer.test(Scripted([]), dataloaders=Scripted([]).val_dataloader(), ckpt_path=best.best_model_path)
    s = target.summary()
    assert (s["reached"], s["step"], s["first_hit_step"], s["best"]) == (True, 150, 100, 1.0)
    assert "reached at step 150" in printed_verdict(target, module_trainer, capsys)
