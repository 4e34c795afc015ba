"""Runs that cannot be corrupted: every stop by a signal is recorded and exits 128 + signal, in
every phase of a run; the real CLI, as a cluster scheduler would send it."""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from src import signals
from src.checkpoints import checksum
from src.launch import RunFailed, release_run_dir, resume_argv
from src.reliability import AtomicCheckpointIO
from src.run import train
from src.schema import ConfigError
from tests.conftest import FAST, ROOT, make_cfg, run_cli
from tests.run_helpers import comparable, read_metrics, snapshot, start_cli, wait_for_file

# 120 steps, a validation every 40, last.ckpt every 10 steps: a few seconds of training
BUDGET = [
    *FAST,
    "hardware.threads=1",
    "callbacks.target_reached.target=null",
    "trainer.max_steps=120",
    "trainer.val_check_interval=40",
    "callbacks.last_checkpoint.every_n_train_steps=10",
    "+callbacks.phase._target_=tests.test_integrity.PhaseMarker",
]


class PhaseMarker(pl.Callback):
    """Marks the run folder when a phase starts (`.phase_<name>`) and lingers there a second the
    first time, so a test can send a signal inside that phase."""

    def _mark(self, trainer: pl.Trainer, phase: str) -> None:
        mark = Path(trainer.default_root_dir) / f".phase_{phase}"
        if not mark.exists():
            mark.touch()
            time.sleep(1.5)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark(trainer, "validation")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark(trainer, "test")


# moment -> the file whose appearance means the run is there
MOMENTS = {
    "startup": "outputs/runs/*/.hydra/config.yaml",  # Hydra made the folder; torch is still importing
    "training": "outputs/runs/*/checkpoints/last.ckpt",
    "validation": "outputs/runs/*/.phase_validation",
    "test": "outputs/runs/*/.phase_test",
}


# the validation and test phases (~19 s each) are slow: their stop takes the same `signals.check` path,
# the second-SIGTERM test below signals inside validation, and the ten-random-moments test reaches both
@pytest.mark.parametrize(
    "moment",
    [
        m if m in ("startup", "training") else pytest.param(m, marks=pytest.mark.slow(reason="~19 s; CI time"))
        for m in MOMENTS
    ],
)
def test_sigterm_at_any_moment_exits_143_records_interrupted_and_resumes(tmp_path, moment):
    proc = start_cli(*BUDGET, cwd=tmp_path)
    run = wait_for_file(MOMENTS[moment], tmp_path, proc).parent
    run = run.parent if run.name in (".hydra", "checkpoints") else run
    proc.send_signal(signal.SIGTERM)  # what SLURM sends on pre-emption
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    metrics = read_metrics(run)
    assert metrics["status"] == "interrupted" and metrics["signal"] == "SIGTERM", metrics
    last = run / "checkpoints" / "last.ckpt"
    if moment == "startup":
        assert metrics["checkpoint"] is None and not last.exists()
        return
    assert metrics["checkpoint"] == str(last)
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]  # loadable
    assert step == metrics["step"] > 0
    res = run_cli("ckpt_path=last", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_metrics(run)["status"] == "completed" and read_metrics(run)["steps"] == 120


def test_a_second_sigterm_stops_at_once_and_still_exits_143(tmp_path):
    proc = start_cli(*BUDGET, cwd=tmp_path)
    run = wait_for_file("outputs/runs/*/.phase_validation", tmp_path, proc).parent
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # inside the lingering validation: no batch boundary to wait for
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert read_metrics(run)["status"] == "interrupted"


# -- one run per folder ------------------------------------------------------------------------
LONG = [*(o for o in BUDGET if not o.startswith(("trainer.max_steps", "+callbacks"))), "trainer.max_steps=100000"]


def stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM


def test_a_second_run_on_a_live_runs_folder_is_refused_and_changes_nothing(tmp_path):
    run = tmp_path / "shared"
    first = start_cli(*LONG, f"hydra.run.dir={run}", cwd=tmp_path)
    wait_for_file("shared/checkpoints/last.ckpt", tmp_path, first)
    hydra_files = {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()}
    second = run_cli(*LONG, "seed=7", f"hydra.run.dir={run}", cwd=tmp_path)
    assert second.returncode == 2 and " since " in second.stderr, second.stderr
    assert second.stderr.strip() == (
        f"error: hydra.run.dir={run} is in use by a live run (pid {first.pid} on {socket.gethostname()} since "
        + second.stderr.split(" since ")[1].split(")")[0]
        + "); wait for it to end or choose another folder."
    )
    stop(first)
    assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == hydra_files  # run 1's config
    assert read_metrics(run)["status"] == "interrupted" and "seed=7" not in (run / "train.log").read_text()
    res = run_cli(f"ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_steps=60", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_metrics(run)["status"] == "completed"


def test_resuming_a_live_run_is_refused_and_last_skips_it(tmp_path):
    proc = start_cli(*LONG, cwd=tmp_path)
    last = wait_for_file("outputs/runs/*/checkpoints/last.ckpt", tmp_path, proc)
    run = last.parent.parent
    before = sorted(p.name for p in run.rglob("*") if "checkpoints" not in p.parts)
    res = run_cli(f"ckpt_path={last}", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith(
        f"error: ckpt_path={last} belongs to {run}, which is in use by a live run (pid {proc.pid} on "
    ) and res.stderr.strip().endswith("; wait for it to end.")
    res = run_cli("ckpt_path=last", cwd=tmp_path)  # the only unfinished run is live: not a candidate
    assert res.returncode == 2 and "ckpt_path=last found no unfinished run" in res.stderr
    stop(proc)
    assert sorted(p.name for p in run.rglob("*") if "checkpoints" not in p.parts) == sorted([*before, "metrics.json"])


# -- resume is the run it claims to be ---------------------------------------------------------
@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A run killed (SIGKILL) after its first last.ckpt, as a power cut would leave it."""
    base = tmp_path_factory.mktemp("killed")
    proc = start_cli(*LONG, "trainer.max_steps=120", cwd=base)
    last = wait_for_file("outputs/runs/*/checkpoints/last.ckpt.sha256", base, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return last.parent.parent


def copy_run(run: Path, tmp_path: Path) -> Path:
    """The killed run, copied under tmp_path/outputs/runs, where `ckpt_path=last` looks."""
    return Path(shutil.copytree(run, tmp_path / "outputs" / "runs" / run.name))


def test_resume_trains_the_saved_config_and_only_budget_keys_may_change(killed, tmp_path):
    run = copy_run(killed, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    repo = tmp_path / "repo"  # today's code with a changed default: model.hidden 50 -> 20
    repo.mkdir()
    for name in ("train.py", "src", "conf"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, repo / name)
    lstm = repo / "conf" / "model" / "lstm.yaml"
    lstm.write_text(lstm.read_text().replace("hidden: 50", "hidden: 20"))
    before = snapshot(run)

    res = run_cli("task.lag=3", f"ckpt_path={last}", cwd=tmp_path, script=str(repo / "train.py"))
    assert (res.returncode, res.stderr.strip()) == (2, (
        f"error: task.lag cannot change when resuming {run}, which continues with its saved config; only "
        "trainer.max_steps, trainer.max_epochs, hardware.threads, trainer.enable_progress_bar, progress, samples, "
        f"diagnostics, logger, summary may change; to change task.lag, start a new run from its weights with init_from={last}."
    ))  # fmt: skip
    assert snapshot(run) == before  # a refused resume leaves no trace

    res = run_cli("ckpt_path=last", "trainer.max_steps=90", cwd=tmp_path, script=str(repo / "train.py"))
    assert res.returncode == 0, res.stderr
    metrics = read_metrics(run)
    assert metrics["status"] == "completed" and metrics["steps"] == 90
    assert metrics["params"] == 35500  # hidden 50, as saved, not today's default (20)
    assert (run / ".hydra" / "config.yaml").read_bytes() == (killed / ".hydra" / "config.yaml").read_bytes()
    (resume,) = OmegaConf.load(run / ".hydra" / "resumes.yaml")
    assert list(resume.overrides) == ["trainer.max_steps=90"] and resume.from_step == 10
    assert not list(run.glob(".hydra_*"))


def test_a_damaged_checkpoint_is_refused_by_its_checksum(killed, tmp_path):
    run = copy_run(killed, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = b"garbage garbage!"  # still a loadable zip, other numbers
    last.write_bytes(bytes(data))
    res = run_cli(f"ckpt_path={last}", cwd=tmp_path)
    assert (res.returncode, res.stderr.strip()) == (2, (
        f"error: ckpt_path={last} does not match its checksum (last.ckpt.sha256): the file is damaged "
        "(truncated or overwritten); use another checkpoint of the run."
    ))  # fmt: skip
    assert not (run / "metrics.json").exists()


def test_a_checkpoint_older_than_last_is_refused_and_init_from_starts_a_new_run(killed, tmp_path):
    run = copy_run(killed, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    older = run / "checkpoints" / "older.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    torch.save({**ckpt, "global_step": 5}, older)
    (run / "checkpoints" / "older.ckpt.sha256").write_text(f"{checksum(older)}  older.ckpt\n")
    before = snapshot(run)
    res = run_cli(f"ckpt_path={older}", cwd=tmp_path)
    assert (res.returncode, res.stderr.strip()) == (2, (
        f"error: ckpt_path={older} is at step 5, older than {last} (step 10), which resuming it would "
        f"overwrite; resume {last}, or start a new run from these weights with init_from={older}."
    ))  # fmt: skip
    assert snapshot(run) == before

    # init_from: the weights only, in a new run (step 0, fresh optimizer); lr ~ 0 keeps them
    cfg = make_cfg(
        tmp_path,
        "hardware.threads=1",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "optim.optimizer.lr=1e-12",
        f"init_from={last}",
    )
    metrics, objects = train(cfg)
    assert metrics["steps"] == 1 and Path(cfg.paths.output_dir) != run
    for name, tensor in objects["module"].state_dict().items():
        assert torch.allclose(tensor, ckpt["state_dict"][name], atol=1e-6), name


# -- TensorBoard after a resume ----------------------------------------------------------------
def raw_steps(tb: Path, tag: str) -> list[int]:
    """The steps of every point of tag in the event files, as written."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [
        ev.step
        for f in sorted(tb.glob("events.*"))
        for ev in EventFileLoader(str(f)).Load()
        if any(v.tag == tag for v in ev.summary.value)
    ]


def test_a_resumed_run_shows_every_step_once_in_tensorboard(tmp_path):
    from tests.test_tensorboard_view import TensorBoard

    overrides = [
        *(o for o in LONG if o not in FAST and not o.startswith("trainer.max_steps")),
        "data.val_size=300", "data.test_size=300", "samples=2", "logger=tensorboard", "trainer.max_steps=150",
        "trainer.val_check_interval=20", "trainer.log_every_n_steps=10",
        "callbacks.last_checkpoint.every_n_train_steps=30",
    ]  # fmt: skip
    whole = run_cli(*overrides, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    proc = start_cli(*overrides, "+logger.tensorboard.flush_secs=0.2", cwd=tmp_path)
    last = wait_for_file("outputs/runs/*/checkpoints/last.ckpt.sha256", tmp_path, proc).with_suffix("")
    # kill once the events on disk go past the checkpoint: points the resume logs again
    run = last.parent.parent

    def step() -> float:  # of last.ckpt; inf while a save replaces it
        try:
            return torch.load(last, map_location="cpu", weights_only=False)["global_step"]
        except Exception:
            return float("inf")

    # Frozen while looking, so the kill lands on what was seen: points on disk past the checkpoint,
    # which the resume logs again (the Python loader shows both copies unless purge_step says so).
    while True:
        proc.send_signal(signal.SIGSTOP)
        if max(raw_steps(run / "tb", "train/loss"), default=0) > step():
            break
        proc.send_signal(signal.SIGCONT)
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert max(raw_steps(run / "tb", "train/loss")) > step()
    res = run_cli("ckpt_path=last", cwd=tmp_path)
    assert res.returncode == 0, res.stderr

    resumed_tb = f"outputs/runs/{run.name}/tb"
    for load_fast in ("auto", "false"):  # the Rust data server a user gets, and the Python loader
        board = TensorBoard(tmp_path, load_fast)
        try:
            board.wait_loaded({"whole/tb", resumed_tb})
            for tag in ("train/loss", "val/exact"):
                expected = [s for s, _ in board.scalars("whole/tb", tag)]
                assert [s for s, _ in board.scalars(resumed_tb, tag)] == expected, (load_fast, tag)
                assert len(set(expected)) == len(expected) > 5
        finally:
            board.stop()


# -- every stop recorded -----------------------------------------------------------------------
def test_a_full_disk_during_a_checkpoint_write_fails_cleanly_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # a real full filesystem: room for one checkpoint (~440 kB), not for its replacement beside it
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(run)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        cfg = make_cfg(
            tmp_path, "hardware.threads=1", "callbacks.target_reached.target=null", "callbacks.model_checkpoint=null",
            "trainer.max_steps=40", "trainer.val_check_interval=40", "callbacks.last_checkpoint.every_n_train_steps=5",
        )  # fmt: skip
        with pytest.raises(RunFailed) as err:
            train(cfg)
        last = run / "checkpoints" / "last.ckpt"
        assert str(err.value) == (
            f"writing {last} failed: No space left on device (errno 28); free space or point paths.output_dir at "
            f"a writable disk; the last complete checkpoint is {last}."
        )
        assert read_metrics(run) == {"status": "failed", "error": str(err.value), "step": 10, "checkpoint": str(last)}
        assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 5  # the previous one, whole
        assert (run / "checkpoints" / "last.ckpt.sha256").read_text().split()[0] == checksum(last)
        assert not list(run.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(run)], check=True)


class CrashIn(pl.Callback):
    """Raises in the phase it is given, as a bug there would."""

    def __init__(self, phase: str):
        self.phase = phase

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.phase == "validation":
            raise RuntimeError("a bug in validation")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.phase == "test":
            raise RuntimeError("a bug in test")


@pytest.mark.parametrize("phase", ["validation", "test"])
def test_a_crash_in_validation_or_test_is_recorded_failed(tmp_path, phase):
    res = run_cli(
        *LONG, "trainer.max_steps=40", "+callbacks.crash._target_=tests.test_integrity.CrashIn",
        f"+callbacks.crash.phase={phase}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1 and f"RuntimeError: a bug in {phase}" in res.stderr
    assert read_metrics(tmp_path / "run") == {"status": "failed", "error": f"RuntimeError: a bug in {phase}"}


def test_sigterm_ends_a_sweep_with_143_and_starts_no_further_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start_cli("-m", *LONG, "seed=0,1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    last = wait_for_file("sweep/*/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert read_metrics(last.parent.parent)["status"] == "interrupted"
    assert [p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")] == [last.parent.parent.name]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"  # a zombie has ended
    except (FileNotFoundError, IndexError):
        return False


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_sigterm_to_the_runner_alone_stops_the_jobs_in_its_workers_and_starts_no_more(tmp_path):
    # `kill <runner pid>` reaches the runner, not the loky workers training its jobs, nor a worker
    # started after it: the tree's stop file carries it to both. Before, the workers trained on.
    sweep = tmp_path / "sweep"
    proc = start_cli("-m", "hydra/launcher=parallel", *LONG, "seed=0,1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for_file("sweep/*/checkpoints/last.ckpt", tmp_path, proc)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)  # to the runner's pid only
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.count("SIGTERM: stopping at the next batch boundary") == 1, err[-3000:]  # said once, by the runner
    jobs = {p.name: read_metrics(p) for p in sweep.iterdir() if (p / "metrics.json").exists()}
    assert jobs and all(m["status"] == "interrupted" for m in jobs.values()), jobs
    trained = [m for m in jobs.values() if m["step"]]
    assert trained and all(Path(m["checkpoint"]).exists() for m in trained)  # stopped at a batch, saved
    assert not (sweep / "2_seed=2" / "checkpoints").exists() and not (sweep / "seed=2" / "checkpoints").exists()
    time.sleep(1)
    assert not [w for w in workers if alive(w)], "a worker outlived its runner"


def test_sigterm_to_sweep_py_stops_its_runner_and_jobs_and_summarizes(tmp_path):
    # sweep.py runs train.py -m: a SIGTERM to sweep.py alone (`kill`, `timeout`) used to end it
    # and leave the runner training on, unseen. Now it is passed on, once, and waited for.
    sweep = tmp_path / "hidden"
    args = [*LONG, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "sweep.py"), "hidden", *args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    wait_for_file("hidden/*/checkpoints/last.ckpt", tmp_path, proc)
    (runner,) = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted: summarizing the jobs that finished" in err
    assert re.search(r"jobs done \(\d interrupted\)", err) and "failed)" not in err  # progress tells them apart
    assert "3 expected; 0 completed, 2 interrupted, 0 failed, 1 missing" in out, out  # 2 workers, 3 jobs
    assert "interrupted: 0_model.hidden=2: SIGTERM at step " in out and "resume: train.py ckpt_path=" in out
    assert "has not stopped" not in err  # stopped within the grace, not by the escalation
    assert not alive(runner)


def test_sweep_py_killed_hard_takes_its_runner_and_jobs_with_it(tmp_path):
    # SIGKILL cannot be caught, so sweep.py cannot pass it on. The runner lives in its own session,
    # and it and its jobs used to train on, orphaned and unseen, in a folder a resume would share.
    # Now the kernel sends the runner SIGTERM when sweep.py dies: the jobs stop and are recorded.
    sweep = tmp_path / "hidden"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "sweep.py"), "hidden", *LONG, f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_file("hidden/*/checkpoints/last.ckpt", tmp_path, proc)
    (runner,) = children(proc.pid)
    tree = [runner, *children(runner)]
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 60
    while any(alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in tree if alive(p)], "the runner or a worker outlived sweep.py"
    jobs = {p.name: read_metrics(p) for p in sweep.iterdir() if (p / "metrics.json").exists()}
    assert jobs and all(m["status"] == "interrupted" and m["signal"] == "SIGTERM" for m in jobs.values()), jobs
    assert all(Path(m["checkpoint"]).exists() for m in jobs.values() if m["step"])  # stopped at a batch, saved


def test_a_runner_that_does_not_stop_is_signalled_again_then_killed(tmp_path):
    # The parent's side (sweep.py): a runner ignoring SIGTERM gets it again after the grace, then SIGKILL.
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", stubborn], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert child.stdout.readline() == "up\n"
    with signals.Forward(grace=1.0) as stops:
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would signal sweep.py
        started = time.monotonic()
        code = stops.wait(child)
    assert code == -signal.SIGKILL and stops.got == [signal.SIGTERM]
    assert 2.0 <= time.monotonic() - started < 6.0
    assert signal.getsignal(signal.SIGTERM) is not stops._on_signal  # handed back


def test_a_signal_stop_crosses_process_boundaries():
    # A launcher's worker sends the exception that ended its job back to the runner (pickle).
    again = pickle.loads(pickle.dumps(signals.SignalStop(signal.SIGTERM)))
    assert isinstance(again, signals.SignalStop) and again.signum == signal.SIGTERM and str(again) == "SIGTERM"


@pytest.mark.slow(reason="10 interrupted runs and their resumes, ~3 min")
def test_sigterm_at_ten_random_moments_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    overrides = [*(o for o in BUDGET if not o.startswith(("+callbacks", "trainer.max_steps"))), "trainer.max_steps=800"]
    started = time.monotonic()
    whole = run_cli(*overrides, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    duration = time.monotonic() - started
    assert whole.returncode == 0, whole.stderr
    expected = comparable(read_metrics(tmp_path / "whole"))
    rng = random.Random(0)
    resumed = 0
    for i in range(10):
        cwd = tmp_path / str(i)
        cwd.mkdir()
        proc = start_cli(*overrides, cwd=cwd)
        time.sleep(rng.uniform(0.2, duration))  # start-up, training, validation, checkpoint writes, test
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGTERM:  # before Python ran train.py's first line: nothing made
            assert not (cwd / "outputs").exists()
            continue
        (run,) = (cwd / "outputs" / "runs").iterdir()
        if proc.returncode == 0:  # finished before the signal
            assert read_metrics(run)["status"] == "completed"
            continue
        assert proc.returncode == 128 + signal.SIGTERM, err
        metrics = read_metrics(run)
        assert metrics["status"] == "interrupted", metrics
        if metrics["checkpoint"] is None:  # stopped before the first checkpoint: nothing to resume
            continue
        res = run_cli("ckpt_path=last", cwd=cwd)
        assert res.returncode == 0, res.stderr
        assert comparable(read_metrics(run)) == expected, i
        resumed += 1
    assert resumed >= 3  # most moments fall inside training


# -- a checkpoint and its checksum are one unit (issue 21, class 1) ----------------------------
class KillInWrite(pl.Callback):
    """SIGKILLs this process right after one step of a checkpoint write, as a power cut or an
    out-of-memory kill would land there: RNN_TEST_KILL_WRITE='<step>:<n>' names the step
    (AtomicCheckpointIO.WRITE_STEPS) and the n-th write of the process; unset, nothing."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        spec = os.environ.get("RNN_TEST_KILL_WRITE")
        if spec:
            kill_in_write(trainer.strategy.checkpoint_io, *spec.split(":"))


def kill_in_write(io: AtomicCheckpointIO, step: str, n: int | str) -> None:
    writes = []

    def written(at: str, path: Path) -> None:
        writes.extend([path] if at == "data" else [])
        if at == step and len(writes) == int(n):
            os.kill(os.getpid(), signal.SIGKILL)

    io._written = written


@pytest.mark.parametrize("step", AtomicCheckpointIO.WRITE_STEPS)
def test_a_kill_at_any_step_of_a_checkpoint_write_leaves_a_run_train_py_resumes(tmp_path, monkeypatch, step):
    # A kill between the rename and the checksum write left a whole last.ckpt that every resume refused
    # as damaged ("does not match its checksum"): no documented command resumed the run.
    run = tmp_path / "outputs" / "runs" / "r"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    last = run / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "global_step": 10}, last)
    child = os.fork()
    if child == 0:  # the run, killed in its second checkpoint write
        io = AtomicCheckpointIO()
        kill_in_write(io, step, 1)
        io.save_checkpoint({"state_dict": {}, "global_step": 20}, last)
        os._exit(0)
    assert os.waitpid(child, 0)[1] == signal.SIGKILL
    monkeypatch.chdir(tmp_path)
    argv = resume_argv(["train.py", "ckpt_path=last"])  # refused before (exit 2) at `renamed`
    release_run_dir(run)
    assert f'ckpt_path="{last}"' in argv
    at = torch.load(last, weights_only=False)["global_step"]
    assert at == (10 if step in ("data", "sums_pending") else 20)


@pytest.mark.parametrize(
    "step",
    [
        s
        if s == "renamed"
        else pytest.param(s, marks=pytest.mark.slow(reason="2 runs each; `renamed` runs by default"))
        for s in AtomicCheckpointIO.WRITE_STEPS
    ],
)
def test_train_py_killed_inside_a_checkpoint_write_resumes_with_ckpt_path_last(tmp_path, monkeypatch, step):
    overrides = [*LONG, "trainer.max_steps=40", "+callbacks.kill._target_=tests.test_integrity.KillInWrite"]
    monkeypatch.setenv("RNN_TEST_KILL_WRITE", f"{step}:2")  # the second write: last.ckpt at step 20
    killed = run_cli(*overrides, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    monkeypatch.delenv("RNN_TEST_KILL_WRITE")
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    res = run_cli("ckpt_path=last", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_metrics(run)["status"] == "completed" and read_metrics(run)["steps"] == 40
    (resume,) = OmegaConf.load(run / ".hydra" / "resumes.yaml")
    assert resume.from_step == (10 if step in ("data", "sums_pending") else 20)


# -- one reader for checkpoints (class 2) ------------------------------------------------------
def damaged_message(path: Path, key: str = "checkpoint ") -> str:
    return (
        f"error: {key}{path} does not match its checksum ({path.name}.sha256): the file is damaged (truncated or "
        "overwritten); use another checkpoint of the run."
    )


def test_predict_and_eval_refuse_a_checkpoint_whose_checksum_belongs_to_another_file(killed, tmp_path):
    # predict.py and eval.py loaded it without a word
    run = copy_run(killed, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    (run / "checkpoints" / "last.ckpt.sha256").write_text(f"{checksum(run / '.hydra' / 'config.yaml')}  last.ckpt\n")
    before = snapshot(run)
    for script, args in (("predict.py", [str(run), "1", "2", "3", "4", "5"]), ("eval.py", [str(run)])):
        res = run_cli(*args, script=script, cwd=tmp_path)
        assert (res.returncode, res.stderr.strip()) == (2, damaged_message(last)), script
    assert snapshot(run) == before and not (tmp_path / "outputs" / "runs" / f"{run.name}.eval").exists()
    cfg = make_cfg(tmp_path, *LONG, f"init_from={last}")  # named by its own key, not ckpt_path=
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert f"error: {err.value}" == damaged_message(last, "init_from=")


def test_a_checkpoint_without_its_checksum_is_named_by_predict_and_by_a_resume(killed, tmp_path):
    run = copy_run(killed, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    (run / "checkpoints" / "last.ckpt.sha256").unlink()
    warning = (
        f"warning: {last} has no checksum file (last.ckpt.sha256), so damage to it cannot be detected; "
        "loading it as it is."
    )
    res = run_cli(str(run), "1", "2", "3", "4", "5", script="predict.py", cwd=tmp_path)
    assert res.returncode == 0 and warning in res.stderr.splitlines(), res.stderr
    res = run_cli(f"ckpt_path={last}", "trainer.max_steps=40", cwd=tmp_path)
    assert res.returncode == 0 and warning in res.stderr.splitlines(), res.stderr
    assert warning in (run / "train.log").read_text()


# -- a resume continues the same run, or refuses (class 3) --------------------------------------
def test_a_resume_of_a_run_whose_saved_config_was_edited_is_refused(killed, tmp_path):
    # trained the rest on the edited task (lag 3) and recorded one completed run
    run = copy_run(killed, tmp_path)
    config = run / ".hydra" / "config.yaml"
    assert "  lag: 1\n" in config.read_text()
    config.write_text(config.read_text().replace("  lag: 1\n", "  lag: 3\n"))
    before = snapshot(run)
    res = run_cli("ckpt_path=last", cwd=tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert (res.returncode, res.stderr.strip()) == (2, (
        f"error: ckpt_path={last} was trained with task.lag=1, but {config} now has task.lag=3: the run's config "
        "was edited after it started; a resume continues the run as it was trained; restore task.lag, or start a "
        f"new run from these weights with init_from={last}."
    ))  # fmt: skip
    assert snapshot(run) == before


def test_a_checkpoint_from_another_run_is_refused_in_its_folder_and_outside_it(killed, tmp_path):
    # another run's last.ckpt put in this run's folder "completed" with 0 steps and reported the
    # other run's best.ckpt as its test weights
    other, _ = train(make_cfg(tmp_path, *LONG, "trainer.max_steps=10", "trainer.val_check_interval=10", "seed=3"))
    assert other["status"] == "completed"
    run = copy_run(killed, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    for name in ("last.ckpt", "last.ckpt.sha256"):
        shutil.copy(tmp_path / "run" / "checkpoints" / name, run / "checkpoints" / name)
    before = snapshot(run)
    res = run_cli(f"ckpt_path={last}", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"error: ckpt_path={last} belongs to another run (run id "), res.stderr
    assert res.stderr.strip().endswith(
        f"so resuming it here would mix two runs; resume that run's own folder, or start a new run from these "
        f"weights with init_from={last}."
    )
    assert snapshot(run) == before
    # outside a run folder a checkpoint starts a new run from today's config: the same config, or refused
    outside = tmp_path / "elsewhere.ckpt"
    shutil.copy(killed / "checkpoints" / "last.ckpt", outside)
    shutil.copy(killed / "checkpoints" / "last.ckpt.sha256", tmp_path / "elsewhere.ckpt.sha256")
    (tmp_path / "elsewhere.ckpt.sha256").write_text(f"{checksum(outside)}  elsewhere.ckpt\n")
    with pytest.raises(ConfigError) as err:
        train(make_cfg(tmp_path / "new", *LONG, "task.lag=2", f"ckpt_path={outside}"))
    assert str(err.value) == (
        f"ckpt_path={outside} was trained with task.lag=1, but this run has task.lag=2; a resume continues the run as "
        f"it was trained; resume with the config it was trained on, or start a new run from these weights with "
        f"init_from={outside}."
    )
    assert not (tmp_path / "new").exists()
