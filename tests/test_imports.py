"""Module layering: the fit-level helpers do not reach back into the trainer that uses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reliability_records_a_stop_without_importing_run(tmp_path):
    """src.run imports src.reliability; the reverse would be a cycle. A fresh interpreter that
    imports src.reliability and records a failed fit (stop_report writes metrics.json) must never
    have imported src.run."""
    code = f"""
import json, sys
from pathlib import Path
import pytorch_lightning as pl
from src.launch import RunFailed
from src.reliability import RunGuard, stop_report

out = Path({str(tmp_path)!r})
trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
err = stop_report(RunFailed("disk full"), trainer, RunGuard(out / "checkpoints"), out)
assert isinstance(err, RunFailed), err
assert json.loads((out / "metrics.json").read_text())["status"] == "failed"
assert "src.run" not in sys.modules, "src.reliability imported src.run"
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_config_checks_import_no_torch():
    """Bad input is refused before heavy imports: the cell and topology names come from the model
    registries' source (src/models/*.py import torch), and validating a task and a model imports no torch."""
    code = """
import sys
from src.config import CELLS, TOPOLOGIES, ConfigError, check_model, make_task
task = make_task({"context": 5, "lag": 1})
assert check_model({"cell": "lstm", "hidden": 8, "topology": "auto"}, task)["topology"] == "last"
try:
    check_model({"cell": "lstm", "hidden": 8, "topology": "ring"}, task)
except ConfigError as err:
    assert "choose one of: auto, last" in str(err), err
assert "torch" not in sys.modules, "validation imported torch"
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
