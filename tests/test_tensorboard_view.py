"""What a user sees in TensorBoard: a real TensorBoard server on a finished default run and a
3-job sweep (both run through train.py as a user would), queried over HTTP as the browser does.

Steps (src/loggers.py): a point at step s was measured on the weights after s optimizer steps.
Budgets: 60 steps, a validation every 20, train/loss every 20 (and the last batch).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.conftest import run_cli

TINY = [
    "trainer.val_check_interval=20",
    "trainer.log_every_n_steps=20",
    "data.val_size=200",
    "data.test_size=200",
    "callbacks.target_reached.target=null",
]
RUN_STEPS, SWEEP_STEPS = 60, 40
HIDDEN = (2, 4, 8)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TensorBoard root: a default run (a checkpoint kept after every step, to recompute losses)
    and a sweep over model.hidden."""
    root = tmp_path_factory.mktemp("tb_view")
    keep = ["callbacks.last_checkpoint.every_n_train_steps=1", "callbacks.last_checkpoint.save_top_k=-1"]
    run = run_cli(*TINY, *keep, f"trainer.max_steps={RUN_STEPS}", f"hydra.run.dir={root}/run")
    assert run.returncode == 0, run.stderr[-3000:]
    sweep = run_cli(
        "-m",
        *TINY,
        f"trainer.max_steps={SWEEP_STEPS}",
        f"model.hidden={','.join(map(str, HIDDEN))}",
        f"hydra.sweep.dir={root}/sweep",
        "progress=false",  # how a run prints is not a hyperparameter: no HParams column
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoard:
    """The venv's tensorboard as a subprocess, and its HTTP API."""

    def __init__(self, logdir: Path, load_fast: str) -> None:
        self.port = _free_port()
        exe = Path(sys.executable).parent / "tensorboard"
        args = [str(exe), "--logdir", str(logdir), "--port", str(self.port), "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*args, f"--load_fast={load_fast}", "--reload_interval=1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,  # the Rust data server exits when this closes
        )

    def get(self, route: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{route}", timeout=30) as r:
            return json.loads(r.read())

    def post(self, route: str, body: dict) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{route}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        q = urllib.parse.urlencode({"run": run, "tag": tag})
        return [(step, value) for _, step, value in self.get(f"/data/plugin/scalars/scalars?{q}")]

    def wait_loaded(self, runs: set[str], timeout: float = 90) -> None:
        """Until every run's scalars and text are served (loading is asynchronous)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                tags = self.get("/data/plugin/scalars/tags")
                text = self.get("/data/plugin/text/tags")
                if all(
                    "val/exact" in tags.get(r, {}) and "val/exact" in tags.get(f"{r}/test", {}) and text.get(r)
                    for r in runs
                ):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"tensorboard did not serve {sorted(runs)} within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stderr):
            f.close()


RUNS = {"run/tb", *(f"sweep/{i}_model.hidden={h}/tb" for i, h in enumerate(HIDDEN))}


# the default loader (the Rust data server, what a user gets) and the Python one (--load_fast=false)
@pytest.fixture(scope="module", params=["auto", "false"])
def board(request: pytest.FixtureRequest, logdir: Path):
    tb = TensorBoard(logdir, request.param)
    try:
        tb.wait_loaded(RUNS)
        yield tb
    finally:
        tb.stop()


def _metrics(logdir: Path, run: str) -> dict[str, Any]:
    return json.loads((logdir / run).parent.joinpath("metrics.json").read_text())


def test_curves_sit_at_the_steps_that_measured_them(board: TensorBoard, logdir: Path) -> None:
    assert set(board.get("/data/runs")) >= RUNS
    for run in RUNS:
        steps = RUN_STEPS if run == "run/tb" else SWEEP_STEPS
        metrics = _metrics(logdir, run)
        val = board.scalars(run, "val/exact")
        # one point per validation, after 20, 40, ... optimizer steps; none at step 0
        assert [s for s, _ in val] == list(range(20, steps + 1, 20)), (run, val)
        assert val[-1][1] == pytest.approx(metrics["val/exact"], rel=1e-6)
        train = board.scalars(run, "train/loss")
        # every 20 steps up to the last one, beside the validations; none before training (step 0)
        assert [s for s, _ in train] == list(range(20, steps + 1, 20)), (run, train)
        assert train[-1][1] == pytest.approx(metrics["train/loss"], rel=1e-6)
        # the test result: the test run's point on the val card, at the last step
        assert board.scalars(f"{run}/test", "val/exact") == [(steps, pytest.approx(metrics["test/exact"], rel=1e-6))]


def test_train_loss_is_the_loss_at_its_step(board: TensorBoard, logdir: Path) -> None:
    """Recompute train/loss at step 20 and 40: the loss of the batch that drove that update (batch
    step - 1 of the stream, a pure function of the seed) on the weights it met (the checkpoint after
    step - 1 updates)."""
    import torch

    from src.datamodules.sequence_datamodule import SequenceDataModule
    from src.lit_models.sequence_module import SequenceModule
    from src.run import build_net, validate

    cfg = OmegaConf.load(logdir / "run/.hydra/config.yaml")
    cfg.paths.output_dir = str(logdir / "run")  # saved as ${hydra:runtime.output_dir}
    task, net_kwargs, _ = validate(cfg)
    logged = dict(board.scalars("run/tb", "train/loss"))
    stream = SequenceDataModule(task, seed=cfg.seed, **cfg.data).train_stream(0, RUN_STEPS)
    for step in (20, 40):
        module = SequenceModule(build_net(task, net_kwargs), task, optimizer=torch.optim.Adam)
        ckpt = torch.load(logdir / f"run/checkpoints/epoch=0-step={step - 1}.ckpt", weights_only=False)
        module.load_state_dict(ckpt["state_dict"])
        x, y, mask, _ = stream.get(step - 1)
        with torch.no_grad():
            loss = module.loss(module.net(x)[0], y, mask).item()
        assert logged[step] == pytest.approx(loss, rel=1e-5), step


def _natural(tag: str) -> list:
    """TensorBoard's Time Series order of tags (and so of card groups): digits and `/` before
    letters, numbers by value, then by character."""
    import re

    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", tag.replace("/", "\0"))]


def test_dashboard_groups(board: TensorBoard) -> None:
    """Time Series opens the first two card groups (by name): `train` and `val`, the curves. No
    single-dot `test` group: the test result is the `test` run's point on each val card, and each
    chance level the `chance` run's flat line on it; the end-of-run numbers and what the network
    holds sort after them; no `epoch` card."""
    tags = board.get("/data/plugin/scalars/tags")
    groups = sorted({t.split("/")[0] for run in tags for t in tags[run]}, key=_natural)
    assert groups[:2] == ["train", "val"] and set(groups) == {"train", "val", "val_target", "weights"}, groups
    assert set(tags["run/tb"]) >= {"train/loss", "val/exact", "val/acc", "val/loss", "val_target/steps"}
    assert set(tags["run/tb/test"]) == {"val/exact", "val/acc", "val/loss"}
    assert board.scalars("run/tb/chance", "val/exact") == [(s, pytest.approx(0.01)) for s in (20, 40, 60)]
    assert board.scalars("run/tb/chance", "train/loss") == [(s, pytest.approx(math.log(100))) for s in (20, 40, 60)]
    layout = board.get("/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c["multiline"]["tag"] for cat in layout["category"] for c in cat["chart"]}
    assert charts["val/exact"] == ["^val/exact$"]  # the run, its chance level and its test result


def test_the_result_and_how_to_read_it_are_served(board: TensorBoard, logdir: Path) -> None:
    q = urllib.parse.urlencode({"run": "run/tb", "tag": "result/summary"})
    (entry,) = board.get(f"/data/plugin/text/text?{q}")
    metrics = _metrics(logdir, "run/tb")
    assert entry["step"] == RUN_STEPS and f"{metrics['test/exact']:.4g}" in entry["text"]
    assert "smoothing=0" in entry["text"]  # what TensorBoard's default smoothing hides, and how to turn it off


def test_hparams_list_the_chosen_hyperparameters_and_final_metrics(board: TensorBoard, logdir: Path) -> None:
    experiment = board.post("/data/plugin/hparams/experiment", {"experimentName": "", "includeMetrics": True})
    names = [h["name"] for h in experiment["hparamInfos"]]
    # the plugin sorts `differs` first and the UI shows five: marked are what was trained and the
    # overrides (the swept key among them), not what stayed at its default
    first = [h["name"] for h in experiment["hparamInfos"] if h.get("differs")]
    assert {"task.name", "model.cell", "model.topology", "model.hidden"} <= set(first), first
    assert "data.batch_size" not in first and names[: len(first)] == first
    for key in ("task.name", "model.cell", "model.hidden", "task.lag", "task.context", "optim.optimizer.lr", "seed"):
        assert key in names
    assert not [n for n in names if "_target_" in n or n.startswith(("paths.", "hydra.", "callbacks.", "progress"))], (
        names
    )
    assert "model.hidden" in [h["name"] for h in experiment["hparamInfos"] if h.get("differs")]
    shown = [m["displayName"] for m in experiment["metricInfos"]]
    assert shown[:4] == ["test/exact", "test/acc", "test/loss", "steps to target"], shown
    assert {"val/exact", "chance/exact", "steps", "memory capacity"} <= set(shown)
    by_name = {m["displayName"]: m["name"] for m in experiment["metricInfos"]}

    groups = board.post(
        "/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"hparam": n} for n in names] + [{"metric": m["name"]} for m in experiment["metricInfos"]],
            "startIndex": 0,
            "sliceSize": 100,
            "includeMetrics": True,
        },
    )["sessionGroups"]
    sessions = {s["name"]: g for g in groups for s in g["sessions"]}
    assert set(sessions) == RUNS
    for run, group in sessions.items():
        metrics = _metrics(logdir, run)
        hidden = 50 if run == "run/tb" else int(run.split("=")[1].split("/")[0])
        assert group["hparams"]["model.hidden"] == hidden
        assert group["hparams"]["task.name"] == "echo_lag" and group["hparams"]["seed"] == 0
        values = {
            shown: v["value"]
            for v in group["metricValues"]
            for shown, name in by_name.items()
            if (v["name"]["tag"], v["name"].get("group", "")) == (name["tag"], name.get("group", ""))
        }
        for tag in ("val/exact", "test/exact", "test/loss"):
            assert values[tag] == pytest.approx(metrics[tag], rel=1e-6), (run, tag)
        assert values["chance/exact"] == pytest.approx(0.01)
        assert values["steps"] == metrics["steps"]


def test_samples_text_with_ok_column(board: TensorBoard, logdir: Path) -> None:
    q = urllib.parse.urlencode({"run": "run/tb", "tag": "samples/test"})
    (entry,) = board.get(f"/data/plugin/text/text?{q}")
    assert entry["step"] == RUN_STEPS
    assert "<table>" in entry["text"] and "predicted" in entry["text"]
    assert entry["text"].count("<tr>") == 1 + 5  # header and the 5 sample windows
    assert ">ok<" in entry["text"] or "ERR" in entry["text"]
    hparams = OmegaConf.load(logdir / "run/tb/hparams.yaml")
    assert hparams["model.hidden"] == 50 and hparams["task.name"] == "echo_lag"


def test_what_the_network_holds_is_served(board: TensorBoard, logdir: Path) -> None:
    """The end-of-run diagnostics: memory per delay as a Text table, the capacity as a scalar, both
    the numbers metrics.json holds."""
    metrics = json.loads((logdir / "run" / "metrics.json").read_text())
    memory = metrics["diagnostics"]["memory"]
    q = urllib.parse.urlencode({"run": "run/tb", "tag": "weights/memory"})
    (entry,) = board.get(f"/data/plugin/text/text?{q}")
    assert entry["text"].count("<tr>") == 1 + len(memory["delays"])  # header and one row per delay k
    capacity = board.scalars("run/tb", "weights/memory_capacity")
    assert capacity == [(RUN_STEPS, pytest.approx(memory["capacity"], rel=1e-5))]


def test_stateful_points_count_optimizer_steps(cfg_factory) -> None:
    """A stateful task updates the weights twice per batch (chunk 8, tbptt 4): validations every 5
    batches sit at 10, 20, ... optimizer steps, train/loss every 4 steps up to the last, as
    metrics.json counts them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from src.run import train

    cfg = cfg_factory(
        "logger=tensorboard",
        "task=echo_lag_online",
        "task.chunk=8",
        "model.tbptt=4",
        "model.hidden=8",
        "trainer.max_steps=40",
        "trainer.val_check_interval=5",
        "trainer.log_every_n_steps=4",
        "callbacks.target_reached.target=null",
    )
    metrics, _ = train(cfg)
    assert metrics["steps"] == 40 and metrics["batches"] == 20
    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/exact")] == [10, 20, 30, 40]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(4, 41, 4))
    assert events.Scalars("train/loss")[-1].value == pytest.approx(metrics["train/loss"], rel=1e-6)
    test = EventAccumulator(str(Path(cfg.paths.output_dir) / "tb" / "test"))
    test.Reload()
    assert [e.step for e in test.Scalars("val/exact")] == [40]
