"""A CLI run writes its own folder: config, metrics.json, checkpoints, TensorBoard events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
