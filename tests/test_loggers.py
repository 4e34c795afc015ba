"""logger=wandb and logger=mlflow with the real packages (requirements-loggers.txt; CI installs it):
the chosen hyperparameters, final metrics and sample predictions reach them, and a default run
imports neither."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from src.loggers import wandb_logged_in
from tests.conftest import ROOT

TINY = [
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
    "trainer.log_every_n_steps=20",
    "model.hidden=8",
    "data.val_size=100",
    "data.test_size=100",
    "callbacks.target_reached.target=null",
]


def _train(cfg_factory, *overrides: str) -> tuple[dict[str, Any], Path]:
    from src.run import train

    cfg = cfg_factory(*TINY, *overrides)
    metrics, _ = train(cfg)
    return metrics, Path(cfg.paths.output_dir)


def _wandb_records(path: Path) -> list[Any]:
    """The records of an offline W&B run file: a 7-byte header, then LevelDB-style log records
    (crc32, length, type; FULL=1, FIRST=2, MIDDLE=3, LAST=4) in 32 KiB blocks, each a protobuf Record."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, out, pending = path.read_bytes(), 7, [], b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero padding
            continue
        pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _items(records: list[Any], kind: str) -> list[dict[str, Any]]:
    """The key -> value updates of each record of a kind (config, summary, history); a key comes
    as `key` or as `nested_key` (one element for a flat key), depending on the record."""
    out = []
    for r in records:
        if r.WhichOneof("record_type") == kind:
            updates = getattr(r, kind).item if kind == "history" else getattr(r, kind).update
            out.append({(u.key or ".".join(u.nested_key)): json.loads(u.value_json) for u in updates})
    return out


def test_wandb_offline_gets_hparams_final_metrics_and_samples(cfg_factory, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the loggers extra (requirements-loggers.txt) is not installed")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    metrics, run = _train(cfg_factory, "logger=wandb")
    (offline,) = (run / "wandb").glob("offline-run-*")  # not logged in: offline, under the run folder
    path, end = next(offline.glob("run-*.wandb")), time.monotonic() + 60
    # wandb's service process may still be writing after finish() returns: wait for the exit record
    records = _wandb_records(path)
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.monotonic() < end, "the offline W&B run has no exit record after 60 s"
        time.sleep(0.2)
        records = _wandb_records(path)
    config = {k: v for update in _items(records, "config") for k, v in update.items()}
    assert config["model.hidden"] == 8 and config["task.name"] == "echo_lag" and config["seed"] == 0
    summary = {k: v for update in _items(records, "summary") for k, v in update.items()}
    assert summary["test/exact"] == pytest.approx(metrics["test/exact"])
    assert summary["val_chance/exact"] == pytest.approx(0.01)
    assert summary["val_target/steps"] == 40
    # train/loss points carry their step (Lightning's trainer/global_step): every 20 updates, to the last
    history = _items(records, "history")
    assert [h["trainer/global_step"] for h in history if "train/loss" in h] == [20, 40]
    assert "epoch" not in {k for h in history for k in h}
    (table,) = offline.glob("files/media/table/samples/test_*.table.json")
    samples = json.loads(table.read_text())
    assert samples["columns"] == ["ok", "input", "expected", "predicted"] and len(samples["data"]) == 2
    assert {row[0] for row in samples["data"]} <= {"ok", "ERR"}


def test_wandb_goes_online_only_when_logged_in(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the loggers extra (requirements-loggers.txt) is not installed")
    from src.loggers import WandbLogger

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not wandb_logged_in()
    assert WandbLogger(save_dir=str(tmp_path / "a"))._offline
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    assert wandb_logged_in()
    assert not WandbLogger(save_dir=str(tmp_path / "b"))._offline  # built, never started: no network
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_logged_in()


def test_mlflow_file_store_gets_hparams_final_metrics_and_samples(cfg_factory, tmp_path):
    pytest.importorskip("mlflow", reason="the loggers extra (requirements-loggers.txt) is not installed")
    from mlflow.tracking import MlflowClient

    metrics, run = _train(cfg_factory, "logger=mlflow")
    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    (found,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert found.info.status == "FINISHED"
    assert found.data.params["model.hidden"] == "8" and found.data.params["task.name"] == "echo_lag"
    assert found.data.metrics["test/exact"] == pytest.approx(metrics["test/exact"])
    assert found.data.metrics["val_chance/exact"] == pytest.approx(0.01)
    assert "epoch" not in found.data.metrics
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert [m.step for m in history] == [20, 40]  # every 20 updates, to the last; none before training
    assert [m.step for m in client.get_metric_history(found.info.run_id, "val/exact")] == [20, 40]
    samples = Path(client.download_artifacts(found.info.run_id, "samples/test.md", str(tmp_path))).read_text()
    assert samples.startswith("| | input | expected | predicted |") and samples.count("\n") == 3


def test_a_default_run_imports_neither_extra(tmp_path):
    """`python -X importtime train.py` (TensorBoard logger): no wandb or mlflow module is imported."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "train.py"), *TINY, f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    modules = [ln.rsplit("|", 1)[-1].strip() for ln in res.stderr.splitlines() if ln.startswith("import time:")]
    assert "pytorch_lightning" in modules
    assert not [m for m in modules if m.split(".")[0] in ("wandb", "mlflow")]
