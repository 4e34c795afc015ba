"""Process-level reliability around Hydra: resume in the original run folder, DDP relaunch that
works in a multirun, who owns the run folder, and no half-made folders after bad input.

Imported by `train.py` before Hydra runs, so it stays light: no torch, no Lightning at import.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf, open_dict, read_write

from src.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RANK_VARS = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "SLURM_PROCID")
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


def is_primary() -> bool:
    """True in the process a user started; False in the DDP processes Lightning (or a cluster
    scheduler) started for ranks > 0. Only the primary process checks, creates or cleans up the
    run folder."""
    return all(os.environ.get(v, "0") == "0" for v in RANK_VARS)


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
    """The most recently written checkpoints/last.ckpt of a run under root that did not complete."""
    from src.checks import run_status

    found = [p for p in root.glob("*/checkpoints/last.ckpt") if run_status(p.parent.parent) != "completed"]
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


def resume_argv(argv: list[str]) -> list[str]:
    """Rewrite a single-run command line with `ckpt_path` so the run continues in its own folder.

    Hydra would make a new run folder per invocation. Instead: `hydra.run.dir` is pointed at the
    checkpoint's run folder, the run's saved overrides (its latest `.hydra*/overrides.yaml`) are
    replayed with the new ones on top (a new value for a key replaces the saved one), and Hydra
    saves this invocation's config under `.hydra_resume_<n>`, so the original `.hydra` is kept.
    `ckpt_path=last` picks the newest unfinished run under outputs/runs. A checkpoint outside a
    run folder resumes into a new folder. Raises ConfigError before Hydra creates anything.
    """
    flags, overrides = split_argv(argv)
    asked = [_unquote(o.split("=", 1)[1]) for o in overrides if override_key(o) == "ckpt_path" and "=" in o]
    if not is_primary() or any(f in MULTIRUN_FLAGS for f in flags) or not asked or asked[-1] in ("null", ""):
        return argv
    from src.checks import check_ckpt_path

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
    new = [o for o in overrides if override_key(o) != "ckpt_path"] + [f'ckpt_path="{ckpt}"']
    saved_dirs = sorted(run.glob(".hydra*/overrides.yaml"), key=lambda p: p.stat().st_mtime)
    if ckpt.parent.name != "checkpoints" or not saved_dirs:
        return [argv[0], *flags, *new]
    keys = {override_key(o) for o in new}
    saved = [str(o) for o in OmegaConf.load(saved_dirs[-1]) if override_key(str(o)) not in keys]
    n = len(list(run.glob(".hydra_resume_*"))) + 1
    return [argv[0], *flags, *saved, *new, f'hydra.run.dir="{run}"', f"hydra.output_subdir=.hydra_resume_{n}"]


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
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        _check_or_exit("hydra.run.dir", run_dir)
        holds_run = (run_dir / "metrics.json").exists() or (run_dir / "checkpoints").exists()
        if holds_run and config.get("ckpt_path") is None and is_primary():
            # refused here, before Hydra rewrites that run's .hydra/ and appends to its log
            _exit(f"hydra.run.dir={run_dir} already holds a run; pick a new folder (runs are never overwritten).")
        _FRESH["run_dir"] = None if run_dir.exists() or not is_primary() else run_dir

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _check_or_exit("hydra.sweep.dir", Path(str(config.hydra.sweep.dir)).absolute())


def _check_or_exit(key: str, path: Path) -> None:
    from src.checks import check_output_dir

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
    if run_dir is None or not run_dir.is_dir():
        return
    if all((p.name.startswith(".hydra") and p.is_dir()) or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
