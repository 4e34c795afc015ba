"""DDP on CPU (2 gloo processes): the same accuracy as one process, distinct batches per rank, and
multirun + DDP (Lightning relaunches sys.argv, which breaks the usual Hydra setup)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from src.datamodules.generate import make_split
from src.datamodules.sequence_datamodule import SequenceDataModule
from src.datamodules.tasks import make_task
from src.files import write_json
from src.run import build_parts, plan, record_failure, train
from tests.conftest import FAST, make_cfg, run_cli
from tests.run_helpers import read_metrics

# the default task (echo lag 1 in a window of 5, LSTM(50)) stops once val/exact = 1 twice in a row
SOLVE = ["hardware.threads=1"]
BATCH_LOG = "+callbacks.batch_log._target_=src.reliability.BatchLog"


def _x_hash(x: torch.Tensor) -> str:  # as BatchLog writes it
    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def test_two_processes_reach_the_single_process_accuracy_on_distinct_batches(tmp_path):
    single, _ = train(make_cfg(tmp_path / "single", *SOLVE))

    run = tmp_path / "ddp"
    res = run_cli(*FAST, *SOLVE, "hardware=ddp", "hardware.devices=2", BATCH_LOG, f"hydra.run.dir={run}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ddp = read_metrics(run)
    assert ddp["world_size"] == 2 and ddp["status"] == "completed"
    assert single["test/acc"] >= 0.99
    assert abs(ddp["test/acc"] - single["test/acc"]) <= 0.005, (ddp["test/acc"], single["test/acc"])
    assert res.stdout.count("Run folder:") == 1  # only rank 0 prints the summary

    # Each rank logged the batches it trained on: distinct data, and exactly batch k of its own
    # stream with batch_size / 2 rows, as TrainStream defines it.
    logs = [[json.loads(ln) for ln in (run / "batches" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(logs[0]) == len(logs[1]) == ddp["batches"]
    assert not {e["x"] for e in logs[0]} & {e["x"] for e in logs[1]}
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    dm = SequenceDataModule(make_task(OmegaConf.to_container(cfg.task)), seed=cfg.seed, **cfg.data)
    dm.world_size = 2
    for rank, log in enumerate(logs):
        dm.rank = rank
        stream = dm.train_stream(0, len(log))
        assert stream.batch == cfg.data.batch_size // 2
        assert [e["x"] for e in log] == [_x_hash(stream.get(e["k"])[0]) for e in log]


def test_train_stream_ranks_draw_distinct_reproducible_batches(tmp_path):
    cfg = make_cfg(tmp_path)
    task = make_task(OmegaConf.to_container(cfg.task))
    streams = {}
    for rank in (0, 1):
        dm = SequenceDataModule(task, seed=0, **cfg.data)
        dm.rank, dm.world_size = rank, 2
        streams[rank] = dm.train_stream(0, 10)
    x0 = [streams[0].get(k)[0] for k in range(10)]
    x1 = [streams[1].get(k)[0] for k in range(10)]
    assert x0[0].shape[0] == cfg.data.batch_size // 2
    assert not {_x_hash(x) for x in x0} & {_x_hash(x) for x in x1}
    assert torch.equal(x0[3], streams[0].get(3)[0])  # batch k is a pure function of (seed, rank, k)


@pytest.mark.slow(reason="two 2-process DDP jobs (~15 s); single DDP runs are tested by default")
def test_multirun_with_ddp_runs_each_job_once_in_its_own_complete_folder(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(
        "-m", "seed=0,1", "hardware=ddp", "hardware.devices=2", "hardware.threads=1", "debug=fast", *FAST,
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1"]  # no job ran twice, no nested sweep
    for seed, job in enumerate(jobs):
        m = read_metrics(job)
        assert (m["status"], m["seed"], m["world_size"]) == ("completed", seed, 2)
        assert (job / ".hydra" / "config.yaml").is_file() and (job / "checkpoints" / "last.ckpt").is_file()
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 ran in this job's folder
    assert res.stdout.count("Run folder:") == 2
    assert not (tmp_path / "outputs").exists()  # no rank wrote a folder of its own


def test_logged_validation_metrics_are_the_mean_over_every_rank(tmp_path):
    """Each rank validates its own shard of the validation set (every 2nd window); the logged
    val/* (rank 0's, in metrics.json) must be the metric over the whole set, which one process
    scoring the same weights gives. Rank 0's shard alone differs (asserted, so the test has teeth:
    MeanMetric(sync_on_compute=False) fails it)."""
    run = tmp_path / "ddp"
    budget = ["trainer.max_steps=4", "trainer.val_check_interval=4", "callbacks.target_reached=null"]
    res = run_cli(*FAST, *SOLVE, *budget, "hardware=ddp", "hardware.devices=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ddp = read_metrics(run)
    assert (ddp["status"], ddp["steps"], ddp["world_size"]) == ("completed", 4, 2)

    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    OmegaConf.update(cfg, "paths.output_dir", str(tmp_path / "single"))
    OmegaConf.update(cfg, "hardware", {**cfg.hardware, "strategy": "auto", "devices": 1})
    module = build_parts(cfg, plan(cfg)).module
    weights = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert weights["global_step"] == 4  # the weights the last validation scored
    module.load_state_dict(weights["state_dict"])
    task = make_task(OmegaConf.to_container(cfg.task))
    scores = {}
    for rank, world in ((0, 1), (0, 2), (1, 2)):  # the whole set, then each rank's shard
        dm = SequenceDataModule(task, seed=cfg.seed, **cfg.data)
        dm.rank, dm.world_size = rank, world  # the trainer's setup would make it (0, 1): shard now
        dm.val_set = dm._shard(make_split(task, dm.val_seed, dm.val_size))
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        trainer.validate(module, datamodule=dm, verbose=False)
        scores[rank, world] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for key in ("val/loss", "val/acc", "val/exact"):
        assert ddp[key] == pytest.approx(scores[0, 1][key], abs=1e-6), (key, ddp[key], scores)
    assert scores[0, 2]["val/loss"] != pytest.approx(scores[0, 1]["val/loss"], abs=1e-4)


def test_a_failing_rank_above_0_writes_no_record(tmp_path, monkeypatch):
    """The run's metrics.json is rank 0's: a rank > 0 that fails says so on stderr only (rank 0
    records its own failure, or the run's end)."""
    cfg = make_cfg(tmp_path)
    out = Path(cfg.paths.output_dir)
    out.mkdir()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert record_failure(cfg, RuntimeError("rank 1 ran out of memory")) is False
    assert not (out / "metrics.json").exists()
    monkeypatch.delenv("LOCAL_RANK")
    record_failure(cfg, RuntimeError("rank 0 failed"))
    assert read_metrics(out)["status"] == "failed"


def test_concurrent_writers_of_one_record_never_share_a_temporary_file(tmp_path):
    """Two ranks (or jobs) writing the same metrics.json at once: each write is whole and none
    fails (one shared `<name>.tmp` made one writer rename the other's file, or a missing one)."""
    path = tmp_path / "metrics.json"
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for k in range(300):
                write_json(path, {"writer": i, "k": k, "pad": "x" * 20000 * (i + 1)})
        except BaseException as err:  # noqa: BLE001 - any failure is the finding
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    data = json.loads(path.read_text())
    assert len(data["pad"]) == 20000 * (data["writer"] + 1)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left
