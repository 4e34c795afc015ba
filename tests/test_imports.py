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
    """Bad input is refused before heavy imports: the cell names are the files of src/models/cells/
    (read without importing them), so a task, a bad cell name and a bad common model key are refused
    without torch; only the chosen cell's own options and the topology (classes of torch modules)
    import it."""
    code = """
import sys
from src.schema import ConfigError
from src.datamodules.tasks import make_task
from src.models.node import check_model
task = make_task({"context": 5, "lag": 1})
for model, message in (({"cell": "transformer", "hidden": 8}, "model.cell='transformer' is not allowed"),
                       ({"cell": "lstm", "hidden": 0}, "model.hidden=0 is not allowed")):
    try:
        check_model(model, task)
        raise AssertionError(model)
    except ConfigError as err:
        assert str(err).startswith(message), err
assert "torch" not in sys.modules, "validation imported torch"
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_help_imports_neither_torch_nor_lightning():
    """`python train.py --help` answers from the composed config alone: the schemas it registers
    are pydantic and Hydra, never torch or Lightning (seconds of start-up). -X importtime lists
    every module the process imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported, done.stderr[-2000:]  # the listing is real
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning_fabric"))
    assert not heavy, heavy[:5]


def test_a_batch_already_on_the_device_is_not_walked_again():
    """The streams make their batches on the training device; the module hands such a batch back
    as it is (Lightning's generic transfer walks it every step), and moves any other batch."""
    import torch

    from src.datamodules.tasks import make_task
    from src.lit_models.sequence_module import SequenceModule

    module = SequenceModule(torch.nn.Linear(1, 1), make_task({"context": 5, "lag": 1}), torch.optim.SGD)
    batch = [torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5).bool(), True]
    assert module.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = module.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved is not batch and moved[0].device.type == "meta" and moved[3] is True
