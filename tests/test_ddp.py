"""DDP on CPU (2 gloo processes): the same accuracy as one process, distinct batches per rank, and
multirun + DDP (Lightning relaunches sys.argv, which breaks the usual Hydra setup)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from omegaconf import OmegaConf

from src.datamodules.sequence_datamodule import SequenceDataModule
from src.datamodules.tasks import make_task
from src.run import train
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
