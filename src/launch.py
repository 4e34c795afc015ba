"""Process-level reliability around Hydra: resume in the original run folder, DDP relaunch that
works in a multirun, who owns the run folder, and no half-made folders after bad input.

Imported by `train.py` before Hydra runs, so it stays light: no torch, no Lightning at import.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf, open_dict, read_write

from src.hardware import is_primary
from src.run_config import RESUMABLE, resumable
from src.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# What Lightning's DDP launcher leaves in os.environ after a fit; see `ddp_job`.
LAUNCHER_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Hydra flags that take a value (`-cn train`), so the value is not read as an override.
VALUE_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "-p", "--package", "-c", "--cfg")
MULTIRUN_FLAGS = ("-m", "--multirun")


class RunFailed(RuntimeError):
    """A run that started but cannot go on (non-finite loss, a write that failed); the message is
    one sentence and says what was kept."""


class RunInterrupted(RuntimeError):
    """SIGINT/SIGTERM: the run stopped at a batch boundary with a checkpoint."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = signum


# -- one run per folder ------------------------------------------------------------------------
LOCK = ".lock"
_HELD: dict[Path, int] = {}  # run folder -> open descriptor of its locked .lock


def _owner(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 300).decode(errors="replace").strip() or "a process that has not yet written its id"


def lock_run_dir(
    run_dir: Path, key: str, must_be_new: bool = False, remedy: str = "wait for it to end or choose another folder"
) -> None:
    """Hold an exclusive flock on `<run_dir>/.lock` for the rest of this process (or until
    `release_run_dir`), with `pid <pid> on <host> since <time>` in it; the kernel drops it when
    the process ends, however it ends, so a lock is never stale. Raises ConfigError naming the
    live process when another one holds it, and, with must_be_new, when the folder already holds
    a run; a refused attempt writes nothing (flock does not write; a missing folder is created)."""
    run_dir = run_dir.absolute()
    if run_dir in _HELD:
        return
    if must_be_new and _holds_run(run_dir) and not (run_dir / LOCK).exists():  # a run from before locks
        raise ConfigError(f"{key}={run_dir} already holds a run; pick a new folder (runs are never overwritten).")
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _owner(fd)
        os.close(fd)
        raise ConfigError(f"{key}={run_dir} is in use by a live run ({owner}); {remedy}.") from None
    if must_be_new and _holds_run(run_dir):  # checked under the lock: no run can start or end meanwhile
        os.close(fd)
        raise ConfigError(f"{key}={run_dir} already holds a run; pick a new folder (runs are never overwritten).")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    _HELD[run_dir] = fd


def release_run_dir(run_dir: Path) -> None:
    fd = _HELD.pop(run_dir.absolute(), None)
    if fd is not None:
        os.close(fd)


def live_owner(run_dir: Path) -> str | None:
    """`pid ... on ... since ...` of the live process holding run_dir's lock (not this one)."""
    run_dir = run_dir.absolute()
    if run_dir in _HELD or not (run_dir / LOCK).is_file():
        return None
    fd = os.open(run_dir / LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _owner(fd)
    finally:
        os.close(fd)


def _holds_run(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").exists() or (run_dir / "checkpoints").exists()


# -- command line ------------------------------------------------------------------------------
def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(flags, overrides) of a train.py command line, without argv[0]."""
    flags: list[str] = []
    overrides: list[str] = []
    args = iter(argv[1:])
    for a in args:
        if a in VALUE_FLAGS:
            flags += [a, next(args, "")]
        elif a.startswith("-"):
            flags.append(a)
        else:
            overrides.append(a)
    return flags, overrides


def override_key(override: str) -> str:
    """`++a.b=1` -> `a.b`; `~a` -> `a`; `model=gru` -> `model`."""
    return override.lstrip("~+").split("=", 1)[0]


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def runs_root() -> Path:
    """The folder single runs go to: the fixed part of hydra.run.dir in conf/hydra/default.yaml."""
    hydra_cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "hydra" / "default.yaml"), resolve=False)
    pattern = str(hydra_cfg["run"]["dir"])
    return Path(pattern.split("${", 1)[0] + "x").parent


def latest_unfinished(root: Path) -> Path | None:
    """The most recently written checkpoints/last.ckpt of a run under root that did not complete and
    is not running now."""
    from src.checkpoints import run_status

    found = [
        p
        for p in root.glob("*/checkpoints/last.ckpt")
        if run_status(p.parent.parent) != "completed" and live_owner(p.parent.parent) is None
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


OPTUNA_PLUGIN = "hydra_plugins.hydra_optuna_sweeper"


def check_plugins(argv: list[str], optuna_plugin: str = OPTUNA_PLUGIN) -> None:
    """Refuse `hparams_search=...` in one sentence when the Optuna sweeper (an extra install) is
    missing; Hydra itself would answer with a composition error about `hydra/sweeper/optuna`."""
    import importlib.util

    _, overrides = split_argv(argv)
    searches = [o.split("=", 1)[1] for o in overrides if override_key(o) == "hparams_search" and "=" in o]
    if searches and searches[-1] not in ("null", "") and importlib.util.find_spec(optuna_plugin) is None:
        raise ConfigError(
            f"hparams_search={searches[-1]} needs Hydra's Optuna sweeper, which is not installed here; "
            "install it with `pip install -r requirements-optuna.txt`."
        )


# What may change when a run is resumed: its budget and how it runs, never what it trains.
_RESUME: dict[str, Any] = {}  # this process's resume (run, checkpoint, step, overrides), for resumes.yaml


def resume_argv(argv: list[str]) -> list[str]:
    """Rewrite a single-run command line with `ckpt_path` so the run continues in its own folder,
    as the run it is.

    `ckpt_path=last` picks the newest unfinished run under outputs/runs that is not running now.
    A checkpoint inside a run folder (`<run>/checkpoints/*.ckpt`) continues that run: Hydra is
    pointed at the folder (`hydra.run.dir`) and writes nothing there (`hydra.output_subdir=null`);
    `resumed_config` then trains the run's saved `.hydra/config.yaml`. Only RESUMABLE keys may be
    given; the checkpoint must match its checksum, belong to this run and its saved config (not one
    copied in from another run, nor a config edited since), must not be older than the run's last.ckpt
    (that would overwrite a newer lineage), and the run must not be live: the folder's lock is
    taken here and held for the process's life. A checkpoint outside a run folder starts a new
    run from today's config. Raises ConfigError before anything is written.
    """
    flags, overrides = split_argv(argv)
    asked = [_unquote(o.split("=", 1)[1]) for o in overrides if override_key(o) == "ckpt_path" and "=" in o]
    if not is_primary() or any(f in MULTIRUN_FLAGS for f in flags) or not asked or asked[-1] in ("null", ""):
        return argv
    from src.checkpoints import check_ckpt_path, check_run_checkpoint, checkpoint_step

    if asked[-1] == "last":
        ckpt = latest_unfinished(runs_root().absolute())
        if ckpt is None:
            raise ConfigError(
                f"ckpt_path=last found no unfinished run with checkpoints/last.ckpt under {runs_root()}; "
                "pass ckpt_path=<path to a .ckpt file>."
            )
    else:
        ckpt = Path(asked[-1]).absolute()
    run = ckpt.parent.parent
    check_ckpt_path(str(ckpt), run)  # exists, and is not a completed run's
    new = [o for o in overrides if override_key(o) != "ckpt_path"]
    if ckpt.parent.name != "checkpoints" or not (run / ".hydra" / "config.yaml").is_file():
        return [argv[0], *flags, *new, f'ckpt_path="{ckpt}"']
    fixed = [override_key(o) for o in new if not resumable(override_key(o))]
    if fixed:
        raise ConfigError(
            f"{fixed[0]} cannot change when resuming {run}, which continues with its saved config; only "
            f"{', '.join(RESUMABLE)} may change; to change {fixed[0]}, start a new run from its weights "
            f"with init_from={ckpt}."
        )
    owner = live_owner(run)
    if owner is not None:
        raise ConfigError(
            f"ckpt_path={asked[-1]} belongs to {run}, which is in use by a live run ({owner}); wait for it to end."
        )
    step, last = check_run_checkpoint(ckpt, run), ckpt.parent / "last.ckpt"  # intact, and this run's
    if ckpt.name != last.name and last.is_file() and (last_step := checkpoint_step(last)) > step:
        raise ConfigError(
            f"ckpt_path={ckpt} is at step {step}, older than {last} (step {last_step}), which resuming it would "
            f"overwrite; resume {last}, or start a new run from these weights with init_from={ckpt}."
        )
    lock_run_dir(run, "ckpt_path", remedy="wait for it to end")
    _RESUME.update(run=run, checkpoint=str(ckpt), from_step=step, overrides=new)
    return [argv[0], *flags, *new, f'ckpt_path="{ckpt}"', f'hydra.run.dir="{run}"', "hydra.output_subdir=null"]


def resumed_config(cfg: Any) -> Any:
    """The config a resume in the run's own folder trains: the run's saved `.hydra/config.yaml`,
    with the RESUMABLE keys this command line set taken from the composed cfg (so today's conf/
    changes nothing else). Any other run: cfg itself."""
    from hydra.core.hydra_config import HydraConfig

    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, "last") or not HydraConfig.initialized():
        return cfg
    ckpt = Path(str(ckpt)).absolute()
    saved_file = ckpt.parent.parent / ".hydra" / "config.yaml"
    here = Path(str(HydraConfig.get().runtime.output_dir)).absolute()
    if ckpt.parent.name != "checkpoints" or ckpt.parent.parent != here or not saved_file.is_file():
        return cfg
    saved = OmegaConf.load(saved_file)
    with open_dict(saved):
        for key in {override_key(str(o)) for o in HydraConfig.get().overrides.task}:
            if resumable(key):
                OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        saved.ckpt_path = str(ckpt)
    OmegaConf.set_struct(saved, True)
    return saved


def note_resume(out_dir: Path) -> None:
    """Append this process's resume (time, checkpoint, step, overrides) to `<run>/.hydra/resumes.yaml`;
    called once the resume has passed every check, just before training continues."""
    if _RESUME.get("run") != Path(out_dir).absolute():
        return
    entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), **{k: v for k, v in _RESUME.items() if k != "run"}}
    with open(_RESUME["run"] / ".hydra" / "resumes.yaml", "a") as f:
        f.write(OmegaConf.to_yaml([entry]))
    _RESUME.clear()


# -- DDP inside Hydra --------------------------------------------------------------------------
@contextmanager
def ddp_job(cfg: Any) -> Iterator[None]:
    """Make Lightning's DDP relaunch work for this Hydra job, then undo what it leaves behind.

    Lightning's DDP starts ranks > 0 by re-running `sys.argv` with `hydra.run.dir=<HydraConfig
    run.dir>` and `hydra.output_subdir=null` appended (lightning_fabric/strategies/launchers/
    subprocess_script.py, `_hydra_subprocess_cmd`). In a single run that is right. In a multirun
    it is not (Lightning-AI/pytorch-lightning#11617, #18175; lightning-hydra-template#393): the
    children would run the whole sweep again, in the wrong folder. So for a multirun job, argv is
    rewritten to this job's own overrides as a single run, and HydraConfig's run.dir to the job's
    folder. After the job: argv restored, the launcher's environment variables removed (with
    LOCAL_RANK left set, the next job's Lightning believes a scheduler started its processes and
    waits for ranks that never come; Lightning-AI/pytorch-lightning#16313) and the process group
    destroyed (Lightning keeps it, and the next job would reuse a group whose ranks are gone).
    """
    hw = cfg.hardware
    spawns = (
        hw.get("strategy") == "ddp"
        and hw.get("devices", 1) * hw.get("num_nodes", 1) > 1
        and is_primary()
        and "LOCAL_RANK" not in os.environ
    )
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not spawns or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hc = HydraConfig.get()
    if "joblib" in str(hc.launcher.get("_target_", "")):
        raise ConfigError(
            "hardware=ddp starts its own processes per job, which the joblib launcher's workers cannot do; "
            "run DDP sweeps with the basic launcher (drop hydra/launcher=joblib)."
        )
    saved_argv, saved_env = list(sys.argv), {k: os.environ.get(k) for k in LAUNCHER_VARS}
    flags, _ = split_argv(sys.argv)
    sys.argv = [sys.argv[0], *[f for f in flags if f not in MULTIRUN_FLAGS], *hc.overrides.task]
    with open_dict(hc), read_write(hc):
        hc.run.dir = hc.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if "torch.distributed" in sys.modules:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


# -- run folders -------------------------------------------------------------------------------
_FRESH: dict[str, Path | None] = {"run_dir": None}


class RunDirCheck(Callback):
    """Hydra callback (conf/hydra/default.yaml). Before Hydra creates the run folder: check that
    it can be created (a clear sentence instead of Hydra's traceback), and remember whether it is
    new, so that bad input removes only a folder this invocation made."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _check_folder_name(config, "hydra.run.dir")
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        _check_or_exit("hydra.run.dir", run_dir)
        fresh = not run_dir.exists()
        if is_primary():  # ranks > 0 of a DDP run work in rank 0's folder, under its lock
            # before Hydra writes .hydra/ or its log: a second run on this folder is refused here
            try:
                lock_run_dir(run_dir, "hydra.run.dir", must_be_new=config.get("ckpt_path") is None)
            except ConfigError as err:
                _exit(str(err))
        _FRESH["run_dir"] = run_dir if fresh and is_primary() else None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _check_folder_name(config, "hydra.sweep.dir")
        _check_or_exit("hydra.sweep.dir", Path(str(config.hydra.sweep.dir)).absolute())
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
        hw = config.get("hardware") or {}
        processes = (hw.get("devices") or 1) * (hw.get("num_nodes") or 1) if hw.get("strategy") == "ddp" else 1
        if "submitit" in launcher and isinstance(processes, int) and processes > 1:
            # Lightning relaunches DDP ranks as `python <argv[0]> <overrides>`: under submitit argv[0]
            # is submitit's own module, which cannot take them
            _exit(
                f"hardware.strategy=ddp with {processes} processes cannot run under {launcher.rsplit('.', 1)[-1]} "
                "(hydra/launcher=submitit_*): Lightning would relaunch its ranks through submitit's own entry "
                "point; use hydra/launcher=basic or parallel for DDP jobs, or hardware=cpu under submitit."
            )

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode == RunMode.MULTIRUN and is_primary():  # each job's folder, for the job's life
            try:
                lock_run_dir(Path(str(config.hydra.runtime.output_dir)), "hydra.sweep.dir")
            except ConfigError as err:
                _exit(str(err))

    def on_job_end(self, config: Any, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode == RunMode.MULTIRUN:  # a joblib worker goes on to other jobs
            release_run_dir(Path(str(config.hydra.runtime.output_dir)))


def _check_folder_name(config: Any, key: str) -> None:
    """A value the folder pattern (conf/hydra/default.yaml) puts into a folder's name must be a
    plain name: `task.name=../../x` wrote the run outside outputs/runs, where `ckpt_path=last` and
    the sweep tools look."""
    import re

    node, leaf = key.rsplit(".", 1)
    pattern = str(OmegaConf.to_container(OmegaConf.select(config, node), resolve=False)[leaf])
    for name in re.findall(r"\$\{([^}:]+)\}", pattern):
        value = OmegaConf.select(config, name.strip(), default=None)
        if isinstance(value, str) and ("/" in value or os.sep in value or "\0" in value):
            home = pattern.split("${", 1)[0].rsplit("/", 1)[0] or "."
            _exit(
                f"{name}={value!r} is not allowed: it is part of the run folder's name ({key}={pattern}), so it "
                f"must be a plain name without '/', or the run would be written outside {home}; choose another {name}."
            )


def _check_or_exit(key: str, path: Path) -> None:
    from src.run_config import check_output_dir

    try:
        check_output_dir(key, path)
    except ConfigError as err:
        _exit(str(err))


def _exit(message: str) -> None:
    # Hydra would print an exception raised here with a stack trace; this is bad input, not a bug
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def remove_fresh_run_dir() -> None:
    """After bad input in a single run: delete the folder Hydra made for it moments ago, if it
    holds nothing but Hydra's config and log. A folder that existed before is never touched."""
    run_dir = _FRESH["run_dir"]
    if run_dir is not None:
        remove_if_untouched(run_dir)


def remove_if_untouched(run_dir: Path) -> None:
    """Delete a run or job folder that holds nothing but Hydra's config and log (what Hydra writes
    before the job's first line): a job that never began leaves no folder behind."""
    if run_dir.is_dir() and all(
        (p.name.startswith(".hydra") and p.is_dir()) or p.suffix == ".log" or p.name == LOCK for p in run_dir.iterdir()
    ):
        shutil.rmtree(run_dir, ignore_errors=True)
