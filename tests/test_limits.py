"""Limits checked before work (memory, threads, nodes), the CPU default of one torch thread, and a
debug overlay that wins over an experiment preset. The refusals' exact messages are rows of
docs/bad_input.md; these tests cover what a table row cannot: the issue's own sizes on whatever
machine runs them, the estimate against a measured peak, and real runs of the defaults."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from src.datamodules.data_config import Data
from src.datamodules.tasks import make_task
from src.hardware import check_cluster
from src.limits import available_memory, memory_estimate
from src.models import cells
from src.models.node import check_model
from src.run import train, validate
from src.schema import ConfigError, check
from tests.conftest import CONF, run_cli
from tests.run_helpers import read_metrics


def checked_data(cfg) -> dict:
    """The data node as validate() hands it to the estimate: the schema's defaults filled in."""
    return check(Data, "data", cfg.data).model_dump()


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=[*overrides, "paths.output_dir=unused"])


@pytest.mark.parametrize("override", ["data.batch_size=2000000", "task.context=100000", "task.vocab=1000000"])
def test_the_issues_oversized_configs_are_refused_with_the_numbers(override):
    # Each was OOM-killed without a word (issue 10). Refused wherever the machine has less
    # memory than the estimate, which for these sizes is every ordinary machine.
    cfg = composed(override)
    t = make_task(dict(cfg.task))
    need = sum(memory_estimate(t, check_model(dict(cfg.model), t), checked_data(cfg), 1).values())
    free, _ = available_memory("cpu")
    if need <= free:
        pytest.skip(f"this machine has {free / 2**30:.0f} GB available, more than the {need / 2**30:.0f} GB estimate")
    with pytest.raises(ConfigError, match=r"^this config needs at least [\d.]+ GB of memory \(training batch") as err:
        validate(cfg)
    assert f"{override}," in str(err.value) or f"{override})" in str(err.value)  # the value given is named


@pytest.mark.slow(reason="two real runs, one with a 50,000-row batch (~1.5 GB), to measure peak memory")
def test_the_memory_estimate_follows_a_measured_peak(tmp_path):
    # The estimate's slope (bytes per batch row) against peak RSS measured on real training runs:
    # within 25% of the measured growth, so the refusal threshold means what it says.
    peaks = {}
    for rows in (64, 50000):
        run = tmp_path / f"b{rows}"
        r = run_cli(
            "logger=none", "callbacks=none", "trainer.max_steps=3", "trainer.val_check_interval=3",
            f"data.batch_size={rows}", f"hydra.run.dir={run}", cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        peaks[rows] = read_metrics(run)["peak_rss_mb"] * 2**20
    cfg = composed()
    t = make_task(dict(cfg.task))
    net = check_model(dict(cfg.model), t)

    def estimate(rows: int) -> int:
        return sum(memory_estimate(t, net, {**checked_data(cfg), "batch_size": rows}, 1).values())

    measured, estimated = peaks[50000] - peaks[64], estimate(50000) - estimate(64)
    assert 0.75 < estimated / measured < 1.25, (estimated, measured)


def test_num_nodes_needs_a_cluster_environment(monkeypatch):
    for var in ("MASTER_ADDR", "NODE_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "LSB_JOBID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="hardware.num_nodes=2 needs a cluster environment"):
        check_cluster(2)
    check_cluster(1)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("NODE_RANK", "1")
    check_cluster(2)  # what `torchrun`-style launchers and the README's multi-node recipe set


def test_a_default_cpu_run_trains_on_one_torch_thread(tmp_path):
    # torch's default (one thread per core) triples a run's fit time next to one busy process and
    # slows it ~30x next to a second 2-thread job; one thread is as fast on a quiet machine.
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", "debug=fast", "samples=0"])
    cfg.paths.output_dir = str(tmp_path / "run")
    assert cfg.hardware.threads == 1
    metrics, _ = train(cfg)
    assert metrics["status"] == "completed" and metrics["torch_threads"] == 1
    assert composed("hardware=ddp").hardware.threads == 1


def test_a_debug_overlay_wins_over_an_experiment_preset(tmp_path):
    # `experiment=s5_partial_echo debug=fast` trained the preset's 5,000 steps: the preset came
    # after the overlay in the defaults list. Now a smoke run of S5's model and task.
    run = tmp_path / "run"
    r = run_cli("experiment=s5_partial_echo", "debug=fast", "logger=none", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    m = read_metrics(run)
    assert m["steps"] == 20 and m["task"] == "partial_echo" and m["topology"] == "encdec"
    assert m["params"] > 100_000  # LSTM(150) encoder-decoder: the preset's model, not the default LSTM(50)


@pytest.mark.parametrize("cell", cells.names())
def test_the_memory_estimate_asks_the_cell_its_cost(cell):
    """Every registered cell is estimated from its declared `cost` (no table of cells here): for
    PyTorch's fused cells (cost = gates) the parameters counted are exactly the network's; for the
    others the count is within a factor of 2 (their blocks have norms and projections)."""
    from src.models.cells._torch import TorchCell
    from src.run import build_net

    cfg = composed(f"model.cell={cell}")
    t = make_task(dict(cfg.task))
    net = check_model(dict(cfg.model), t)
    estimated = memory_estimate(t, net, checked_data(cfg), 1)["parameters"] / 16  # weights, grads, Adam's 2
    actual = sum(p.numel() for p in build_net(t, net).parameters())
    if issubclass(cells.get(cell), TorchCell):
        assert estimated == actual
    else:
        assert 0.5 < estimated / actual < 2, (estimated, actual)
