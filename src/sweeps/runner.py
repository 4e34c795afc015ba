"""The named presets of conf/sweep/ and running them: each preset is checked job by job through
train's own checks before anything starts, then run as one `train.py -m` (restarted with the jobs
not run yet when a hard crash ends the runner), then summarized.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict

from src import signals
from src.sweeps.callbacks import CONTINUE_ENV, SUMMARIZED_ENV
from src.sweeps.records import PID_FILE, SEED_KEY, SweepError, job_folders, load_sweep, load_yaml, read_safely
from src.sweeps.summarize import summarize

ROOT = Path(__file__).resolve().parents[2]

PRESET_DIR = ROOT / "conf" / "sweep"

COMMANDS = ("summarize", "list")  # words sweep.py reserves; a preset cannot take these names


def presets() -> dict[str, str]:
    """Preset name -> its first comment line (what the sweep asks)."""
    out = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        lines = [ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("#") and "@package" not in ln]
        out[path.stem] = lines[0] if lines else ""
    return out


def check_preset(name: str, overrides: Sequence[str] = ()) -> None:
    """Refuse an unknown preset, or an override that does not compose with it, before any job
    starts (a bad value would otherwise stop the sweep at the job that takes it). Every value of
    every override is composed once on top of the preset, which names the culprit."""
    known = presets()
    if name not in known:
        raise SweepError(
            f"sweep preset {name!r} does not exist; choose one of: {', '.join(known)} (files in {PRESET_DIR})."
        )
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        raise SweepError(f"sweep.py passes overrides (key=value) to train.py, not options such as {flags[0]!r}.")
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        values = [
            [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
            if o.is_sweep_override()
            else [o.input_line]
            for o in parsed
        ]
    except HydraException as err:
        raise SweepError(f"the overrides {' '.join(overrides)} cannot be read: {str(err).splitlines()[0]}") from None
    from src.run_config import validate
    from src.schema import ConfigError

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for one in [[v] for vals in values for v in vals] + [[vals[0] for vals in values]]:
            try:
                compose("train", overrides=[f"+sweep={name}", *one], return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as err:
                reason = str(err).strip().splitlines()[0].rstrip(".")
                raise SweepError(
                    f"override {' '.join(one)!r} does not apply to sweep preset {name!r}: {reason}."
                ) from None
        # Every job of the grid (seeds aside: a seed changes no check) through train's own checks,
        # so a value that composes but cannot train (task.lag=9 in a window of 5) starts no job.
        # Composing is the slow part (~0.2 s): once per choice of config groups, with the plain
        # key=value overrides of each job applied on top.
        parser = OverridesParser.create()
        composed: dict[tuple[str, ...], Any] = {}
        for job in preset_jobs(name, overrides):
            parsed = parser.parse_overrides(job)
            groups = tuple(o.input_line for o in parsed if (ROOT / "conf" / o.key_or_group).is_dir())
            if groups not in composed:
                composed[groups] = compose("train", overrides=[f"+sweep={name}", *groups, "paths.output_dir=."])
            cfg = composed[groups].copy()
            with open_dict(cfg):
                for o in parsed:
                    if o.input_line not in groups and not o.is_delete():
                        OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
            try:
                validate(cfg)
            except ConfigError as err:
                varying = " ".join(o for o in job if o in overrides or o.split("=", 1)[0] in _grid_keys(name))
                raise SweepError(f"the job {varying} of sweep preset {name!r} would fail: {err}") from None


def _grid_keys(name: str) -> set[str]:
    params = (load_yaml(PRESET_DIR / f"{name}.yaml") or {}).get("hydra", {}).get("sweeper", {}).get("params") or {}
    return set(params)


def preset_jobs(name: str, overrides: Sequence[str]) -> list[list[str]]:
    """The override lists of a preset's jobs with the command line's overrides on top, one seed
    each (Hydra's BasicSweeper expansion of the preset's grid)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = (load_yaml(PRESET_DIR / f"{name}.yaml") or {}).get("hydra", {}).get("sweeper", {}).get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    final: dict[str, Any] = {}
    for o in OverridesParser.create().parse_overrides(args):  # a later value for a key wins
        final[o.get_key_element()] = o
    parsed = [o for k, o in final.items() if k != SEED_KEY or not o.is_sweep_override()]
    jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    return jobs


def preset_command(name: str, overrides: Sequence[str], sweep_dir: Path) -> list[str]:
    """The `train.py -m` command line that runs a preset: the preset is one config group option
    (`+sweep=<name>`), its grid lives in `hydra.sweeper.params`, and later overrides win."""
    return [sys.executable, str(ROOT / "train.py"), "-m", f"+sweep={name}", f"hydra.sweep.dir={sweep_dir}", *overrides]


def run_preset(name: str, overrides: Sequence[str], root: Path = Path("outputs/multirun")) -> tuple[int, Path]:
    """Run a preset with train.py's real CLI, then summarize its folder (even a half-finished one,
    after Ctrl-C). Returns (train.py's exit code, sweep folder)."""
    check_preset(name, [o for o in overrides if not o.startswith("hydra.sweep.dir=")])
    given = [o for o in overrides if o.startswith("hydra.sweep.dir=")]
    if given:
        sweep_dir = Path(given[-1].split("=", 1)[1])
        overrides = [o for o in overrides if not o.startswith("hydra.sweep.dir=")]
    else:
        sweep_dir = root / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{name}_{secrets.token_hex(3)}"
    if (sweep_dir / "multirun.yaml").exists():
        raise SweepError(
            f"hydra.sweep.dir={sweep_dir} already holds a sweep; pick a new folder (sweeps never overwrite)."
        )
    cmd = preset_command(name, overrides, sweep_dir)
    print("running: " + " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    env, left = {k: v for k, v in os.environ.items() if k != signals.STOP_FILE_ENV}, None
    env[SUMMARIZED_ENV] = "1"  # the runner need not print the table: the summary below does
    with signals.Forward() as stops:  # Ctrl-C or SIGTERM: the runner's jobs stop at a batch boundary
        while True:
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=signals.stop_with_parent())
            code = stops.wait(proc)
            interrupted = bool(stops.got)
            if interrupted:
                print("\ninterrupted: summarizing the jobs that finished", file=sys.stderr)
            if code < 0:  # the basic launcher runs jobs in train.py's own process: it died with the job
                record_killed(sweep_dir, proc.pid, -code)
                code = 128 - code
            # a hard crash (a segfault, an out-of-memory kill) ended the runner: go on with the jobs not
            # started yet, as long as each attempt gets further (a user's Ctrl-C or SIGTERM ends the sweep)
            hard = code > 128 and code - 128 not in (signal.SIGINT, signal.SIGTERM)
            if interrupted or not (hard or code == 1) or not (sweep_dir / "multirun.yaml").exists():
                break
            try:
                sweep = load_sweep(sweep_dir)
            except SweepError:
                break
            missing = (sweep.expected or 0) - sum(j.folder is not None and j.status != "missing" for j in sweep.jobs)
            dead = [j for j in sweep.jobs if j.status == "failed" and j.note.startswith("killed")]
            if missing <= 0 or not dead or (left is not None and missing >= left):
                break
            left = missing
            print(f"[sweep] the runner died with a job ({dead[-1].folder.name}: {dead[-1].note}); "
                  f"going on with the {missing} jobs not run yet", flush=True)  # fmt: skip
            env[CONTINUE_ENV] = "1"
        print(f"sweep {name}: train.py exited with {code} after {time.perf_counter() - t0:.1f} s", flush=True)
        if (sweep_dir / "multirun.yaml").exists():
            summarize(sweep_dir)
    return code, sweep_dir


def record_killed(sweep_dir: Path, pid: int, signum: int) -> None:
    """Write metrics.json (status failed) for the job that process `pid` was running when signal
    `signum` killed it: the only place that learns the signal."""
    import signal

    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    for folder in job_folders(sweep_dir) if sweep_dir.is_dir() else []:
        pid_text, _ = read_safely(folder / PID_FILE, str.strip)
        if pid_text == str(pid) and not (folder / "metrics.json").exists():
            error = f"killed by {name} (a hard crash such as a segfault or an out-of-memory kill)"
            (folder / "metrics.json").write_text(json.dumps({"status": "failed", "error": error}, indent=2) + "\n")
            print(f"error: job {folder.name} {error}.", file=sys.stderr)
