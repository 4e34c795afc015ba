"""A CLI run writes its own folder: config, metrics.json, checkpoints, TensorBoard events."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT

FAST = ["debug=fast", "samples=3"]


def test_two_runs_started_together_get_separate_complete_folders(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *FAST],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 2  # same second, different folders
    for run in runs:
        assert (run / ".hydra" / "config.yaml").is_file()
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "checkpoints" / "best.ckpt").is_file()
        assert list((run / "tb").glob("events.out.tfevents.*"))
        metrics = json.loads((run / "metrics.json").read_text())
        for key in ("test/acc", "test/exact", "val/exact", "chance", "steps", "params", "wall_time_s", "target"):
            assert key in metrics
        assert metrics["chance"]["acc"] == 0.01
        assert metrics["status"] == "completed"
    for stdout, _ in outs:
        assert "Sample test windows" in stdout and "Run folder:" in stdout
        table = [ln for ln in stdout.splitlines() if ln.startswith(("  ok ", "  ERR "))]
        assert len(table) == 3  # the sample table: expected vs predicted


def test_tensorboard_has_scalars_hparams_and_samples(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *FAST], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    run = next((tmp_path / "outputs" / "runs").iterdir())
    tags: dict[str, list[str]] = {"scalars": [], "tensors": []}
    for events in Path(run / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for kind in tags:
            tags[kind] += acc.Tags()[kind]
    assert {"val/exact", "val/acc", "train/loss"} <= set(tags["scalars"])
    assert list((run / "tb" / "chance").glob("events.out.tfevents.*"))  # the chance levels: a run beside it
    assert any(t.startswith("samples/test") for t in tags["tensors"])  # text summaries are tensors
    assert any("_hparams_" in t for t in tags["tensors"]) or (run / "tb" / "hparams.yaml").exists()


# -- the terminal is not the run (issue 21, class 5) --------------------------------------------
def run_with_stdout(tmp_path: Path, shell_tail: str, env: dict[str, str] | None = None, *args: str):
    """train.py with its stdout sent where `shell_tail` says; returns (train.py's exit status, stderr)."""
    cmd = f"{shlex.quote(sys.executable)} {ROOT / 'train.py'} {' '.join(map(shlex.quote, [*FAST, *args]))}"
    res = subprocess.run(
        ["bash", "-c", f"{cmd} {shell_tail}; exit ${{PIPESTATUS[0]}}"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip
    return res.returncode, res.stderr


@pytest.mark.parametrize(
    "case",
    [
        "closed_pipe",
        pytest.param("full_disk", marks=pytest.mark.slow(reason="a run each; the closed pipe runs by default")),
        pytest.param("ascii", marks=pytest.mark.slow(reason="a run each; the closed pipe runs by default")),
    ],
)
def test_a_stdout_that_fails_does_not_stop_the_run_and_train_log_keeps_everything(tmp_path, case):
    # the banner raised (BrokenPipeError, "No space left on device", UnicodeEncodeError) and the run
    # was recorded failed before training
    run = tmp_path / "rün"  # a folder name ASCII cannot print
    tail, env = {
        "closed_pipe": ("| head -c 100 > /dev/null", None),
        "full_disk": ("> /dev/full", None),
        "ascii": ("> /dev/null", {"PYTHONIOENCODING": "ascii"}),
    }[case]
    code, err = run_with_stdout(tmp_path, tail, env, f'hydra.run.dir="{run}"')  # quoted: Hydra's grammar
    assert code == 0 and "Traceback" not in err and "Exception ignored" not in err, err
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    log = (run / "train.log").read_text(encoding="utf-8")
    assert f"run folder: {run}" in log and "Sample test windows" in log and f"Run folder: {run}" in log


# -- paths go where the user expects (class 6) --------------------------------------------------
def test_a_task_name_that_is_not_a_plain_name_is_refused_and_writes_nothing(tmp_path):
    # task.name=../../../escape wrote the run outside outputs/runs, where ckpt_path=last looks
    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *FAST, "task.name=../../../escape"], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    pattern = OmegaConf.load(ROOT / "conf" / "hydra" / "default.yaml").run._get_node("dir")._value()
    assert (res.returncode, res.stderr.strip()) == (2, (
        f"error: task.name='../../../escape' is not allowed: it is part of the run folder's name (hydra.run.dir="
        f"{pattern}), so it must be a plain name without '/', or the run would be written outside outputs/runs; "
        "choose another task.name."
    ))  # fmt: skip
    assert not list(tmp_path.iterdir()) and not list(tmp_path.parent.glob("escape*"))


def test_a_dangling_symlink_as_the_run_folder_is_refused_in_a_sentence(tmp_path):
    # ended in a FileExistsError traceback from Hydra's mkdir
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *FAST, f"hydra.run.dir={link}"], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (res.returncode, res.stderr.strip()) == (2, (
        f"error: hydra.run.dir={link} cannot be created: {link} is a symbolic link to {tmp_path / 'nowhere'}, "
        "which does not exist; create its target or choose another folder."
    ))  # fmt: skip
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
