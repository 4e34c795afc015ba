"""Sweeps: run the named presets of conf/sweep/ and turn any multirun folder into a table, plots
and a summary.

A multirun folder is what `python train.py -m ...` writes: `multirun.yaml` (the sweep's config,
with the swept overrides) and one folder per job holding `.hydra/overrides.yaml` and, once the job
has ended, `metrics.json` (status `completed`, `interrupted` or `failed`). The summary compares the
jobs the sweep asked for with the jobs that left a metrics.json, so a half-finished sweep is
summarized with its missing jobs listed; a job whose process died without a metrics.json (a
segfault, an out-of-memory kill) is `failed` ("killed"), known from the pid its job start left in
`.hydra/pid` (`SweepOutcome`). Everything written is a pure function of the folder's files:
summarizing twice gives the same files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src import signals

ROOT = Path(__file__).resolve().parents[1]
PRESET_DIR = ROOT / "conf" / "sweep"
SUMMARY = "summary"  # sub-folder of the sweep folder that the summary owns
SEED_KEY = "seed"
COMMANDS = ("summarize", "list")  # words sweep.py reserves; a preset cannot take these names
# Keys the capacity table reads from each job's composed config.
CELL_KEY, HIDDEN_KEY, LAG_KEY = "model.cell", "model.hidden", "task.lag"
# Folders inside a sweep folder that never hold jobs (submitit logs, our summary, job internals).
NOT_JOBS = {SUMMARY, ".submitit", ".hydra", "tb", "csv", "checkpoints"}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


STATUSES = ("completed", "interrupted", "failed", "missing")
PID_FILE = Path(".hydra") / "pid"  # in a job folder: the process that ran the job


class SweepError(ValueError):
    """A bad preset name or folder; the message is one sentence for the user."""


# -- presets ---------------------------------------------------------------------------------
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
    from src.config import ConfigError
    from src.run import validate

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
    params = (_load_yaml(PRESET_DIR / f"{name}.yaml") or {}).get("hydra", {}).get("sweeper", {}).get("params") or {}
    return set(params)


def preset_jobs(name: str, overrides: Sequence[str]) -> list[list[str]]:
    """The override lists of a preset's jobs with the command line's overrides on top, one seed
    each (Hydra's BasicSweeper expansion of the preset's grid)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = (_load_yaml(PRESET_DIR / f"{name}.yaml") or {}).get("hydra", {}).get("sweeper", {}).get("params") or {}
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


CONTINUE_ENV = "RNN_MEMORY_SWEEP_CONTINUE"  # set by run_preset when it goes on after a hard crash


def already_run(cfg: Any) -> dict[str, Any] | None:
    """In a sweep that `run_preset` goes on with after its runner died, a job whose folder already
    holds a record (metrics.json), or the remains of a job that died with the runner, is not run
    again and nothing of it is touched: returns its metrics (remains are recorded `failed` first).
    None: run the job (always, outside such a sweep)."""
    if not os.environ.get(CONTINUE_ENV):
        return None
    folder = Path(str(cfg.paths.output_dir))
    record = folder / "metrics.json"
    if not record.exists():
        remains = [p.name for p in folder.iterdir() if p.name not in (".hydra", ".lock", "train.log")]
        if not remains:
            return None  # never started: run it
        error = "its process died with the sweep's runner before it finished; not run again, its files are kept"
        record.write_text(json.dumps({"status": "failed", "error": error}, indent=2) + "\n")
    metrics, _ = _read(record, json.loads)
    metrics = metrics if isinstance(metrics, dict) else {}
    print(f"[sweep] {folder.name}: already recorded ({metrics.get('status', 'unreadable')}); not run again", flush=True)
    return metrics


def record_killed(sweep_dir: Path, pid: int, signum: int) -> None:
    """Write metrics.json (status failed) for the job that process `pid` was running when signal
    `signum` killed it: the only place that learns the signal."""
    import signal

    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    for folder in _job_folders(sweep_dir) if sweep_dir.is_dir() else []:
        pid_text, _ = _read(folder / PID_FILE, str.strip)
        if pid_text == str(pid) and not (folder / "metrics.json").exists():
            error = f"killed by {name} (a hard crash such as a segfault or an out-of-memory kill)"
            (folder / "metrics.json").write_text(json.dumps({"status": "failed", "error": error}, indent=2) + "\n")
            print(f"error: job {folder.name} {error}.", file=sys.stderr)


# -- reading a multirun folder ---------------------------------------------------------------
@dataclass
class Job:
    """One job of a sweep: expected by the sweep, found on disk, or both."""

    overrides: dict[str, str]  # key -> value as Hydra wrote it, in the sweep's order
    folder: Path | None = None
    num: int | None = None
    status: str = "missing"  # one of STATUSES
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # error of a failed job, reason of a missing one
    raw: list[str] = field(default_factory=list)  # the overrides as the job's overrides.yaml lists them

    @property
    def name(self) -> str:
        if self.folder is not None:
            return self.folder.name
        return f"#{self.num} " + " ".join(f"{k}={v}" for k, v in self.overrides.items())

    def value(self, key: str) -> Any:
        """A metric (`test/exact`, `target.step`, ...) or a composed-config key (`model.hidden`)."""
        if key in self.metrics:
            return self.metrics[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


@dataclass
class Sweep:
    folder: Path
    sweeper: str
    launcher: str
    keys: list[str]  # every override key of the jobs, in the sweep's order
    values: dict[str, list[str]]  # key -> its values in sweep order
    jobs: list[Job]
    expected: int | None  # None: the sweeper does not fix its jobs in advance (Optuna)
    start: float  # when the sweep began (mtime of multirun.yaml or of the first job's config)
    trials: int | None = None  # jobs an Optuna study asks for
    summary: dict[str, Any] = field(default_factory=dict)  # the config's summary.* (how to judge it)

    @property
    def swept(self) -> list[str]:
        """Keys that take more than one value."""
        return [k for k in self.keys if len(self.values[k]) > 1]

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+"), value  # `+sweep=capacity` adds the key `sweep`


def _load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_Loader)


def _sweep_overrides(hydra: dict[str, Any]) -> list[Any]:
    """The sweep's overrides, parsed, in the order its sweeper reads them: `hydra.sweeper.params`
    (a preset's grid, an Optuna search space) first, then the command line, whose value for a key
    wins."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = hydra.get("sweeper") or {}
    args = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    args += list((hydra.get("overrides") or {}).get("task") or [])
    return OverridesParser.create().parse_overrides(args)


def expected_jobs(multirun: dict[str, Any]) -> list[list[str]] | None:
    """The override lists the sweep asked for, in job-number order, expanded the way Hydra's
    BasicSweeper does. None for sweepers that choose their jobs as they go (Optuna)."""
    hydra = multirun.get("hydra") or {}
    if not str((hydra.get("sweeper") or {}).get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    batches = BasicSweeper.split_arguments(_sweep_overrides(hydra), None)
    return [list(job) for batch in batches for job in batch]


# -- job folder names --------------------------------------------------------------------------
NAME_MAX = 255  # bytes in one file name on the usual file systems (ext4, xfs, APFS, NTFS)
UNKNOWN_CHARS = 24  # a value not known in advance: a float Optuna samples prints in <= 24 chars


def job_name_plan(hydra: dict[str, Any]) -> tuple[list[str], int]:
    """How the job folders `<num>_<override_dirname>` of a sweep will read, from its (unresolved)
    hydra config: (the override keys that take one value in every job, which say nothing about a
    job; bytes in the longest folder name the other keys can make)."""
    final: dict[str, Any] = {}
    for o in _sweep_overrides(hydra):  # a later override of a key replaces the earlier one
        final[o.get_key_element()] = o
    dirname = ((hydra.get("job") or {}).get("config") or {}).get("override_dirname") or {}
    exclude = set(dirname.get("exclude_keys") or [])
    kv_sep, item_sep = str(dirname.get("kv_sep", "=")), str(dirname.get("item_sep", ","))
    fixed: list[str] = []
    widths: list[int] = []
    jobs = 1
    for key, o in final.items():
        if o.key_or_group in exclude:
            continue
        values: list[str] | None = None
        if o.is_sweep_override() and o.is_discrete_sweep():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # glob(): its options are only known to the config loader
                values = None
        elif not o.is_sweep_override():
            values = [str(o.get_value_element_as_str())]
        if values is not None and len(values) == 1:
            fixed.append(o.key_or_group)
            continue
        jobs *= len(values) if values else 1
        items = [f"{key}={v}" for v in values] if values else [f"{key}={'x' * UNKNOWN_CHARS}"]
        widths.append(max(len(i.replace("=", kv_sep).encode()) for i in items))
    trials = (hydra.get("sweeper") or {}).get("n_trials")
    jobs = max(jobs, trials if isinstance(trials, int) else 1)
    longest = len(str(jobs - 1)) + 1 + sum(widths) + len(item_sep.encode()) * max(len(widths) - 1, 0)
    return fixed, longest


class JobNames(Callback):
    """Hydra callback (conf/hydra/default.yaml): a job folder is named by what sets the job apart,
    `<num>_<the overrides that vary across the sweep>`, e.g. `3_model.hidden=50,task.lag=2`, not by
    the budget every job shares (`trainer.max_steps=500`, ...), which would make all names long and
    alike. A job's full overrides stay in its `.hydra/overrides.yaml`, the sweep's in multirun.yaml.

    Every launcher (basic, joblib, submitit, under any sweeper) composes each job's config afresh
    from the sweep's `hydra.overrides.hydra`, so the naming is added there, once, before the first
    job. When a name could exceed NAME_MAX bytes (the file system would refuse the folder, ending
    the sweep), jobs are named by number alone."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = OmegaConf.to_container(config.hydra, resolve=False)
        assert isinstance(hydra, dict)
        fixed, longest = job_name_plan(hydra)
        add = []
        if fixed:
            keys = [*config.hydra.job.config.override_dirname.exclude_keys, *fixed]
            add.append("hydra.job.config.override_dirname.exclude_keys=[" + ",".join(f"'{k}'" for k in keys) + "]")
        if longest > NAME_MAX and "override_dirname" in str(hydra["sweep"]["subdir"]):
            add.append("hydra.sweep.subdir=${hydra.job.num}")
            print(
                f"note: job folder names would reach {longest} bytes (the limit is {NAME_MAX}); jobs are named by "
                "number, and each job's overrides are in its .hydra/overrides.yaml.",
                file=sys.stderr,
            )
        with read_write(config.hydra.overrides.hydra):
            config.hydra.overrides.hydra.extend(add)


class SweepOutcome(Callback):
    """Hydra callback (conf/hydra/default.yaml) that makes every stop of a job visible.

    - At each job's start, the job's process id goes to `<job>/.hydra/pid`: a job folder without
      metrics.json whose process is gone was killed hard (segfault, out-of-memory kill), which no
      code inside that process could record; `read_job` reports it as failed ("killed").
    - At the sweep's end, `train.py -m` exits 1 when any job did not complete (train records a
      failed job and goes on, so Hydra itself would exit 0), naming how many and where to look;
      128 + the signal when a signal stopped the sweep."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        pid = Path(str(config.hydra.runtime.output_dir)) / PID_FILE
        pid.parent.mkdir(parents=True, exist_ok=True)
        pid.write_text(f"{os.getpid()}\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        try:
            sweep = load_sweep(folder)
        except SweepError as err:
            print(f"error: the sweep's outcome cannot be read: {err}", file=sys.stderr)
            sys.exit(1)
        bad = [j for j in sweep.jobs if j.status != "completed"]
        stopped = signals.received()  # by a signal to this runner or to any of its jobs
        if bad or stopped is not None:
            counts = ", ".join(f"{sweep.count(s)} {s}" for s in STATUSES[1:] if sweep.count(s))
            why = "error" if stopped is None else f"{signal.Signals(stopped).name}, the sweep stopped"
            print(
                f"{why}: {len(bad)} of {len(sweep.jobs)} jobs did not complete ({counts or 'none'}); "
                f"see `python sweep.py summarize {folder}`.",
                file=sys.stderr,
            )
            sys.exit(1 if stopped is None else 128 + stopped)


def _job_folders(folder: Path) -> list[Path]:
    """Folders holding a job (its .hydra/overrides.yaml or a metrics.json), at any depth."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here != folder and ("metrics.json" in filenames or (here / ".hydra" / "overrides.yaml").exists()):
            found.append(here)
            dirnames.clear()  # a job's own sub-folders (tb/, checkpoints/) hold no jobs
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in NOT_JOBS)
    return found


def _flat_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """metrics.json with its nested parts flattened: target.step, chance/exact, ..."""
    out = {k: v for k, v in m.items() if not isinstance(v, dict)}
    for k, v in (m.get("chance") or {}).items():
        out[f"chance/{k}"] = v
    for k, v in (m.get("target") or {}).items():
        out[f"target.{k}"] = v
    if isinstance(m.get("weights"), dict) and "test" in m["weights"]:  # which weights test/* was measured on
        out["weights.test"] = m["weights"]["test"]
    return out


def _read(path: Path, load: Any) -> tuple[Any, str]:
    """(content, "") or (None, why it cannot be read): one damaged file must not end the summary."""
    try:
        return load(path.read_text()), ""
    except (OSError, ValueError, yaml.YAMLError) as err:
        return None, f"unreadable {path.name} ({type(err).__name__})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_job(path: Path) -> Job:
    """One job folder: its overrides, config, metrics and status. A job without metrics.json is
    `missing` while its process runs (or when nothing says which process ran it), and `failed`
    ("killed") once that process is gone: it ended without reaching any of train's records."""
    raw, bad_overrides = _read(path / ".hydra" / "overrides.yaml", lambda t: yaml.load(t, Loader=_Loader))
    overrides = [str(o) for o in raw] if isinstance(raw, list) else []
    job = Job(overrides=dict(_split(o) for o in overrides), folder=path, num=_num(path))
    job.raw = overrides
    config, _ = _read(path / ".hydra" / "config.yaml", lambda t: yaml.load(t, Loader=_Loader))
    job.config = config if isinstance(config, dict) else {}
    if (path / "metrics.json").exists():
        metrics, why = _read(path / "metrics.json", json.loads)
        if not isinstance(metrics, dict):
            job.status, job.note = "failed", why or "unreadable metrics.json (not a JSON object)"
            return job
        job.metrics = _flat_metrics(metrics)
        status = metrics.get("status")
        job.status = status if status in STATUSES[:3] else "failed"
        job.note = str(metrics.get("error") or metrics.get("reason") or "")
        if status == "interrupted":
            resume = f"; resume: train.py ckpt_path={metrics['checkpoint']}" if metrics.get("checkpoint") else ""
            job.note = f"{metrics.get('signal', 'a signal')} at step {metrics.get('step')}{resume}"
        if status not in STATUSES[:3]:
            job.note = f"metrics.json records no known status ({status!r})"
        return job
    pid, _ = _read(path / PID_FILE, int)
    if pid is not None and not _alive(pid):
        job.status = "failed"
        job.note = (
            f"killed: its process ({pid}) ended without writing metrics.json, as after a segfault, an "
            "out-of-memory kill or SIGKILL"
        )
    else:
        job.note = "started, no metrics.json yet (still running)" if pid is not None else "started, no metrics.json"
    if bad_overrides:
        job.note += f"; {bad_overrides}"
    return job


def _num(folder: Path) -> int | None:
    m = re.match(r"(\d+)(_|$)", folder.name)
    return int(m.group(1)) if m else None


def load_sweep(folder: Path | str) -> Sweep:
    """Read a multirun folder. Raises SweepError if it is not one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SweepError(f"sweep folder {folder} does not exist; pass the folder Hydra printed as 'sweep output dir'.")
    if not (folder / "multirun.yaml").is_file():
        inner = sorted(p.parent.name for p in folder.glob("*/multirun.yaml"))
        if inner:
            raise SweepError(
                f"{folder} holds {len(inner)} sweeps, not one; pass one of them, e.g. {folder / inner[-1]}."
            )
    folders = _job_folders(folder)
    # Hydra's basic sweeper writes multirun.yaml; the Optuna sweeper does not, but each of its jobs
    # keeps the sweep's hydra config in .hydra/hydra.yaml.
    source = folder / "multirun.yaml"
    if not source.is_file():
        source = next((p / ".hydra" / "hydra.yaml" for p in folders if (p / ".hydra" / "hydra.yaml").is_file()), source)
    if not source.is_file():
        raise SweepError(
            f"{folder} is not a multirun folder (no multirun.yaml and no job folders); pass the folder that "
            "`python train.py -m ...` printed as 'sweep output dir'."
        )
    try:
        multirun = _load_yaml(source) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SweepError(
            f"{source} cannot be read ({type(err).__name__}); it is not a sweep config that train.py -m wrote."
        ) from None
    hydra = multirun.get("hydra") if isinstance(multirun, dict) else None
    if not isinstance(hydra, dict) or not isinstance(hydra.get("sweeper") or {}, dict):
        raise SweepError(f"{source} holds no hydra sweep config; it is not a sweep config that train.py -m wrote.")
    if hydra.get("mode") not in (None, "MULTIRUN"):
        raise SweepError(
            f"{folder} holds a single run, not a sweep; pass a folder written by `python train.py -m ...`."
        )
    try:
        expected = expected_jobs(multirun) if source.name == "multirun.yaml" else None
    except Exception as err:  # the sweep's overrides in it cannot be parsed
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SweepError(f"{source} holds sweep overrides that cannot be read ({reason}).") from None

    found: dict[tuple[str, ...], Job] = {}
    extra: list[Job] = []
    for path in folders:
        job = read_job(path)
        overrides = job.raw
        key = tuple(sorted(overrides))
        if expected is None or key in found:  # a repeated job (copied in by hand) is listed as well
            extra.append(job)
        else:
            found[key] = job

    jobs: list[Job] = []
    if expected is not None:
        for i, overrides in enumerate(expected):
            job = found.pop(tuple(sorted(overrides)), None)
            if job is None:
                job = Job(overrides=dict(_split(o) for o in overrides), note="not started")
            job.num = i if job.num is None else job.num
            jobs.append(job)
        extra = list(found.values())  # folders the sweep did not ask for (copied in by hand)
    jobs += sorted(extra, key=lambda j: (j.num if j.num is not None else math.inf, j.name))

    keys: list[str] = []
    values: dict[str, list[str]] = {}
    for job in jobs:
        for k, v in job.overrides.items():
            if k not in values:
                keys.append(k)
                values[k] = []
            if v not in values[k]:
                values[k].append(v)
    for k in keys:  # numbers in numeric order; names (cells) in the order the sweep gave them
        if all(_number(v) is not None for v in values[k]):
            values[k].sort(key=_number)
    sweeper = hydra.get("sweeper") or {}
    summary = multirun.get("summary") if source.name == "multirun.yaml" else None
    if summary is None:  # Optuna: the jobs' own configs hold it
        first = next((p / ".hydra" / "config.yaml" for p in folders if (p / ".hydra" / "config.yaml").is_file()), None)
        try:
            summary = (_load_yaml(first) or {}).get("summary") if first is not None else None
        except (OSError, yaml.YAMLError, AttributeError):
            summary = None
    return Sweep(
        folder=folder,
        start=source.stat().st_mtime,
        trials=sweeper.get("n_trials") if expected is None else None,
        sweeper=str(sweeper.get("_target_", "?")).rsplit(".", 1)[-1],
        launcher=str((hydra.get("launcher") or {}).get("_target_", "?")).rsplit(".", 1)[-1],
        keys=keys,
        values=values,
        jobs=jobs,
        expected=len(expected) if expected is not None else None,
        summary=summary if isinstance(summary, dict) else {},
    )


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


# -- tables ----------------------------------------------------------------------------------
LOWER_IS_BETTER = ("loss", "mse", "mae")  # a metric named */loss, */mse or */mae solves by going under


def lower_is_better(metric: str) -> bool:
    """An error metric (*/loss, */mse, */mae) solves by going under its threshold."""
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def rule(metric: str, threshold: float) -> str:
    """What solving means: `metric >= threshold`, or `<=` for an error (loss, mse, mae)."""
    return f"{metric} {'<=' if lower_is_better(metric) else '>='} {threshold}"


def meets(value: Any, metric: str, threshold: float) -> bool | None:
    """Whether a value of `metric` solves (see `rule`); None when it is not a number."""
    v = _number(value)
    if v is None or math.isnan(v):
        return None
    return v <= threshold if lower_is_better(metric) else v >= threshold


def solved(job: Job, metric: str, threshold: float) -> bool | None:
    """None when the job has no value for the metric (failed or missing), else `meets`."""
    return meets(job.metrics.get(metric), metric, threshold) if job.status == "completed" else None


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def weights_judged(tested: Iterable[str | None]) -> str:
    """Which weights test metrics were measured on, from the jobs' metrics.json (`weights.test`,
    else `tested_checkpoint`): src/run.py tests the checkpoint callback's best.ckpt, selected on
    validation, when there is one, else the final weights. E.g. `best.ckpt (lowest val/loss) in 4 jobs`."""
    counts: dict[str, int] = {}
    for which in tested:
        which = str(which or "unrecorded weights")
        m = re.match(r"(?:.*/)?(\S+\.ckpt) \(step \d+, (.+)\)$", which)
        which = f"{m.group(1)} ({m.group(2)})" if m else re.sub(r" \(step \d+\)$", "", which)
        counts[which] = counts.get(which, 0) + 1
    if not counts:
        return "no completed job"
    return ", ".join(f"{w} in {n} job{'s' if n > 1 else ''}" for w, n in counts.items())


def judged(sweep: Sweep) -> str:
    """weights_judged over the completed jobs of a sweep."""
    done = [j for j in sweep.jobs if j.status == "completed"]
    return weights_judged(j.metrics.get("weights.test") or j.metrics.get("tested_checkpoint") for j in done)


def job_rows(sweep: Sweep, metric: str, threshold: float) -> tuple[list[str], list[dict[str, str]]]:
    """One row per job (expected or found): overrides, final metrics, steps, time to target, status."""
    scalar = sorted({k for j in sweep.jobs for k in j.metrics if "/" in k})
    order = {"test": 0, "val": 1, "chance": 2}
    scalar.sort(key=lambda k: (order.get(k.split("/")[0], 3), k))
    fields = ["job", "num", "status", *sweep.keys, "solved", *scalar]
    fields += ["steps", "target.reached", "target.step", "target.seconds", "fit_time_s", "wall_time_s"]
    fields += ["params", "torch_threads", "note"]
    rows = []
    for j in sweep.jobs:
        s = solved(j, metric, threshold)
        row = {"job": j.name, "num": _fmt(j.num), "status": j.status, "solved": "" if s is None else str(s).lower()}
        row |= {k: j.overrides.get(k, "") for k in sweep.keys}
        row |= {k: _fmt(j.metrics.get(k)) for k in fields if k not in row}
        row["note"] = j.note
        rows.append(row)
    return fields, rows


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share k/n: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    with p = k/n; good at small n and at 0 or n successes, where p ± z sqrt(p(1-p)/n) collapses."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share(k: int, n: int) -> str:
    """`k/n [lo, hi]`: solved seeds of seeds with the 95% Wilson interval of the solve probability."""
    lo, hi = wilson(k, n)
    return f"{k}/{n} [{lo:.2f}, {hi:.2f}]"


GROUP_COLUMNS = ("steps", "fit_time_s")  # summarized per configuration beside the metric


def group_table(sweep: Sweep, keys: Sequence[str], metric: str, threshold: float) -> Any:
    """The jobs grouped by the values of `keys` (pandas), one row per configuration in the sweep's
    value order, indexed by the tuple of those values. Columns: per job status its count; `ok`/`n`
    (completed jobs that solve, `rule(metric, threshold)` / with a value); `<col>:mean`, `<col>:std` (sample
    standard deviation over seeds, 0 for one) and `<col>:n` of the completed jobs' values of the
    metric, its chance level, steps and fit time; `reached`, `reached:median` of `target.step`."""
    import pandas as pd

    chance = f"chance/{metric.split('/')[-1]}"
    cols = list(dict.fromkeys([metric, chance, *GROUP_COLUMNS]))
    rows = []
    for j in sweep.jobs:
        row: dict[str, Any] = {f"key:{k}": j.overrides.get(k, "") for k in keys} | {"status": j.status}
        done = j.status == "completed"
        row |= {c: _number(j.metrics.get(c)) if done else None for c in cols}
        row["target.step"] = _number(j.metrics.get("target.step"))
        rows.append(row)
    by = [f"key:{k}" for k in keys]
    df = pd.DataFrame(rows, columns=[*by, "status", *cols, "target.step"])
    df = df.astype({c: "float64" for c in [*cols, "target.step"]})
    for k in keys:  # numbers in numeric order, names in the sweep's order; a job without the key first
        order = sweep.values.get(k, [])
        df[f"key:{k}"] = pd.Categorical(df[f"key:{k}"], categories=list(dict.fromkeys(["", *order])))
    if not keys:  # nothing swept but the seed: one group of all jobs
        df["all"], by = "", ["all"]
    df["ok"] = (df[metric] <= threshold) if lower_is_better(metric) else (df[metric] >= threshold)
    grouped = df.groupby(by, observed=True, sort=True)
    out = grouped[cols].agg(["mean", "std", "count"])
    out.columns = [f"{c}:{s.replace('count', 'n')}" for c, s in out.columns]
    for c in cols:
        out.loc[out[f"{c}:n"] == 1, f"{c}:std"] = 0.0
    out["ok"] = grouped["ok"].sum()
    out["n"] = out[f"{metric}:n"]
    out = out.join(pd.crosstab([df[b] for b in by], df["status"]).reindex(columns=list(STATUSES), fill_value=0))
    out["jobs"] = grouped.size()
    out["reached"] = grouped["target.step"].count()
    out["reached:median"] = grouped["target.step"].median()
    tuples = [k if isinstance(k, tuple) and keys else ((k,) if keys else ()) for k in out.index]
    out.index = pd.Index(tuples, dtype=object, tupleize_cols=False)  # looked up by the key tuple itself
    return out


def _pm(row: Any, col: str, digits: int = 3) -> str:
    """`mean ± std` over the seeds of one group_table row (`mean` for one seed, `-` for none)."""
    n = int(row[f"{col}:n"])
    if n == 0:
        return "-"
    mean, spread = row[f"{col}:mean"], row[f"{col}:std"]
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def capacity_table(sweep: Sweep, metric: str, threshold: float) -> tuple[list[str], list[list[str]]] | None:
    """Smallest hidden size that solves each lag, for each cell (and each value of any other swept
    key). A size solves a lag when more than half of its seeds reach `rule(metric, threshold)`; the
    cell shows `size (k/n [lo, hi])`, solved seeds of seeds with the 95% Wilson interval of the
    solve probability, or `> largest (k/n [lo, hi])` with the largest swept size when none does."""
    import pandas as pd

    done = [j for j in sweep.jobs if j.status == "completed"]
    grid = sweep.expected is not None and (HIDDEN_KEY in sweep.swept or LAG_KEY in sweep.swept)
    if not grid or not done or any(j.value(k) is None for j in done for k in (CELL_KEY, HIDDEN_KEY, LAG_KEY)):
        return None
    # `model=rnn,lstm,gru` picks the cell; any other swept key (context, a `model` option that
    # changes more than the cell) splits the rows.
    cell_only = all(j.overrides.get("model", j.value(CELL_KEY)) == j.value(CELL_KEY) for j in done)
    skip = (SEED_KEY, CELL_KEY, HIDDEN_KEY, LAG_KEY, *(("model",) if cell_only else ()))
    other = [k for k in sweep.swept if k not in skip]
    df = pd.DataFrame(
        [
            [str(j.value(CELL_KEY)), *(j.overrides.get(k, "") for k in other), int(j.value(LAG_KEY))]
            + [int(j.value(HIDDEN_KEY)), bool(solved(j, metric, threshold))]
            for j in done
        ],
        columns=["cell", *other, "lag", "hidden", "ok"],
    )
    df["cell"] = pd.Categorical(df["cell"], categories=list(dict.fromkeys(df["cell"])))  # the sweep's order
    tally = df.groupby(["cell", *other, "lag", "hidden"], observed=True, sort=True)["ok"].agg(["sum", "count"])
    lags = sorted(df["lag"].unique())
    verdicts: dict[tuple, dict[int, str]] = {}
    for (*row, lag), sizes in tally.groupby(level=["cell", *other, "lag"], observed=True, sort=True):
        wins = sizes[2 * sizes["sum"] > sizes["count"]]
        at = wins.iloc[0] if len(wins) else sizes.iloc[-1]
        h = int((wins if len(wins) else sizes).index[0 if len(wins) else -1][-1])
        verdicts.setdefault(tuple(row), {})[int(lag)] = (
            f"{'' if len(wins) else '> '}{h} ({share(int(at['sum']), int(at['count']))})"
        )
    header = ["cell", *other, *(f"lag {lag}" for lag in lags)]
    rows = [[*(str(v) for v in row), *(by_lag.get(int(lag), "-") for lag in lags)] for row, by_lag in verdicts.items()]
    return header, rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(lines)


# -- heatmaps --------------------------------------------------------------------------------
def choose_axes(sweep: Sweep, x: str | None = None, y: str | None = None) -> tuple[str | None, str | None, list[str]]:
    """(x, y, facets): two swept keys for the heatmap axes, one panel per value of the others.
    Defaults: y = task.lag and x = model.hidden when both are swept, else numeric keys first."""
    free = [k for k in sweep.swept if k != SEED_KEY]
    for key, name in ((x, "--x"), (y, "--y")):
        if key is not None and key not in free:
            raise SweepError(
                f"{name}={key!r} is not a swept key of this sweep; "
                + (f"choose one of: {', '.join(free)}." if free else "it sweeps nothing but the seed.")
            )
    if x is None and y is None and LAG_KEY in free and HIDDEN_KEY in free:
        x, y = HIDDEN_KEY, LAG_KEY
    numeric = [k for k in free if all(_number(v) is not None for v in sweep.values[k])]
    rest = [k for k in numeric + free if k not in (x, y)]
    rest = list(dict.fromkeys(rest))
    if y is None and rest and (x is not None or len(rest) > 1):  # one free key alone: a one-row strip
        y = rest.pop(0)
    if x is None and rest:
        x = rest.pop(0)
    return x, y, [k for k in free if k not in (x, y)]


def heatmap(
    sweep: Sweep, metric: str, threshold: float, path: Path, x: str | None = None, y: str | None = None
) -> Path:
    """One panel per value of the facet keys; each cell the mean of `metric` over seeds, written
    with its spread (sample std) and how many seeds solve (`rule(metric, threshold)`). Cells with no
    completed job say why (failed / missing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x, y, facets = choose_axes(sweep, x, y)
    xs = sweep.values[x] if x else [""]
    ys = sweep.values[y] if y else [""]
    groups = group_table(sweep, [k for k in (*facets, y, x) if k], metric, threshold)
    panels = list(dict.fromkeys(key[: len(facets)] for key in groups.index)) if facets else [()]
    all_vals = groups[f"{metric}:mean"].dropna()
    bounded = metric.split("/")[-1] in ("acc", "exact")
    vmin, vmax = (0.0, 1.0) if bounded or all_vals.empty else (all_vals.min(), all_vals.max())

    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    w = max(3.0, 1.1 * len(xs) + 1.2)
    h = max(1.6, 0.62 * len(ys) + 1.3)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(w * ncols + 1.2, h * nrows + 0.6), squeeze=False, layout="constrained"
    )
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = None
    for ax, panel in zip(axes.flat, panels, strict=False):
        grid = np.full((len(ys), len(xs)), np.nan)
        for iy, yv in enumerate(ys):
            for ix, xv in enumerate(xs):
                key = (*panel, *([yv] if y else []), *([xv] if x else []))
                g = groups.iloc[groups.index.get_loc(key)] if key in groups.index else None
                if g is None or g["n"] == 0:
                    why = next((st for st in STATUSES[1:] if g is not None and g[st]), "missing")
                    ax.text(ix, iy, why, ha="center", va="center", fontsize=7, color="#555555")
                    continue
                mean, spread, n = g[f"{metric}:mean"], g[f"{metric}:std"], int(g["n"])
                grid[iy, ix] = mean
                label = (f"{mean:.2f}±{spread:.2f}" if n > 1 else f"{mean:.2f}") + f"\n{int(g['ok'])}/{n} solved"
                dark = (mean - vmin) / ((vmax - vmin) or 1) < 0.6
                ax.text(ix, iy, label, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(x or "")
        ax.set_ylabel(y or "")
        ax.set_title(", ".join(f"{k}={v}" for k, v in zip(facets, panel, strict=True)) or metric, fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    seeds = len(sweep.values.get(SEED_KEY, [])) or 1
    what = f"{metric}: mean over {seeds} seed{'s' if seeds > 1 else ''} (± sample std)"
    judged = f"solved: {rule(metric, threshold)}"
    fits = len(what) + len(judged) + 2 <= 10 * fig.get_figwidth()  # about 10 characters an inch at size 10
    fig.suptitle(f"{what}{'; ' if fits else chr(10)}{judged}", fontsize=10)  # a narrow figure: two lines
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version string: same bytes every time
    plt.close(fig)
    return path


# -- TensorBoard -------------------------------------------------------------------------------
def write_tensorboard(folder: Path, images: Sequence[Path], markdown: str, wall_time: float) -> Path:
    """Heatmaps (image tab) and the summary (text tab) as one TensorBoard run `summary/tb` beside
    the jobs' runs, so `tensorboard --logdir <sweep folder>` shows them with the HParams tab.
    A fixed file name and wall time make the file the same on every re-run."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.out.tfevents.summary"
    values = []
    for img in images:
        data = img.read_bytes()
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # PNG IHDR
        values.append(
            Summary.Value(
                tag=f"sweep/{img.stem}",
                image=Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=data),
            )
        )
    text_meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
    values.append(
        Summary.Value(
            tag="sweep/summary",
            metadata=text_meta,
            tensor=TensorProto(
                dtype=7,  # DT_STRING
                string_val=[markdown.encode()],
                tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
            ),
        )
    )
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        writer = RecordWriter(f)
        writer.write(Event(wall_time=wall_time, file_version="brain.Event:2").SerializeToString())
        writer.write(Event(wall_time=wall_time, step=0, summary=Summary(value=values)).SerializeToString())
        writer.flush()
    os.replace(tmp, path)
    return path


# -- the summary -----------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    """Atomic: an interrupted summary never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", metric).strip("-")


def summarize(
    folder: Path | str,
    metric: str | None = None,
    threshold: float | None = None,
    out: Path | str | None = None,
    x: str | None = None,
    y: str | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """Write jobs.csv, summary.md, heatmap PNGs and a TensorBoard run for a multirun folder into
    `out` (default <folder>/summary); print where. Returns {what: path}. The metric, threshold and
    heatmap axes not given are the sweep's own (its config's `summary.*`, which a preset sets)."""
    try:
        return _summarize(folder, metric, threshold, out, x, y, quiet)
    except OSError as err:  # a read-only sweep folder, a full disk: said once, not as a traceback
        where = out if out is not None else Path(folder) / SUMMARY
        raise SweepError(
            f"cannot write the summary to {where} ({err.strerror or type(err).__name__}); pass --out <a writable folder>."
        ) from None


def _summarize(
    folder: Path | str,
    metric: str | None,
    threshold: float | None,
    out: Path | str | None,
    x: str | None,
    y: str | None,
    quiet: bool,
) -> dict[str, Path]:
    sweep = load_sweep(folder)
    own = sweep.summary
    metric = metric if metric is not None else str(own.get("metric") or "test/exact")
    threshold = threshold if threshold is not None else float(own.get("threshold", 0.99))
    free = [k for k in sweep.swept if k != SEED_KEY]  # the sweep's own axes where this run swept them
    x = x if x is not None else (own.get("x") if own.get("x") in free else None)
    y = y if y is not None else (own.get("y") if own.get("y") in free else None)
    out = Path(out) if out is not None else sweep.folder / SUMMARY
    if not any(j.status != "missing" for j in sweep.jobs):
        note = f"{sweep.folder} has no finished job yet"
    else:
        note = ""
    choose_axes(sweep, x, y)  # a bad --x/--y fails here, before anything is written
    known = sorted({k for j in sweep.jobs for k in j.metrics if "/" in k})
    if known and metric not in known:
        raise SweepError(
            f"--metric={metric!r} is not a metric of this sweep's jobs; choose one of: {', '.join(known)}."
        )
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    fields, rows = job_rows(sweep, metric, threshold)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _write(out / "jobs.csv", buf.getvalue())
    written["csv"] = out / "jobs.csv"

    images = []
    if sweep.expected is None and not (x and y):
        note = note or "no heatmap: the sweeper chose its jobs as it went (not a grid); pass --x and --y to draw one"
    if not note:
        images.append(heatmap(sweep, metric, threshold, out / f"heatmap_{_slug(metric)}.png", x, y))
        written["heatmap"] = images[0]

    groups = group_table(sweep, free, metric, threshold)
    chance_key = f"chance/{metric.split('/')[-1]}"  # a metric without its baseline misleads
    g_header = [*free, "seeds", "solved [95% CI]", metric, "chance", "steps", "steps to target", "fit s"]
    g_rows = []
    for key, g in groups.iterrows():
        seeds = f"{g['n']:.0f}" + "".join(f" (+{g[status]:.0f} {status})" for status in STATUSES[1:] if g[status])
        reached = f"{g['reached:median']:.0f} ({g['reached']:.0f}/{g['jobs']:.0f})" if g["reached"] else "-"
        g_rows.append(
            [
                *key,
                seeds,
                share(int(g["ok"]), int(g["n"])),
                _pm(g, metric),
                f"{g[f'{chance_key}:mean']:.3g}" if g[f"{chance_key}:n"] else "-",
                _pm(g, "steps", 0),
                reached,
                _pm(g, "fit_time_s", 1),
            ]
        )
    capacity = capacity_table(sweep, metric, threshold)

    md = [f"# Sweep {sweep.folder.name}", ""]
    counts = ", ".join(f"{sweep.count(s)} {s}" for s in STATUSES)
    if sweep.expected is not None:
        expected = f"{sweep.expected} expected"
    else:
        expected = f"{sweep.trials} trials asked" if sweep.trials else "number not fixed in advance"
    md.append(f"- jobs: {expected}; {counts} ({sweep.sweeper}, {sweep.launcher})")
    for k in sweep.keys:
        md.append(f"- {'swept' if k in sweep.swept else 'fixed'}: `{k}` = {', '.join(sweep.values[k])}")
    md.append(
        f"- solved: `{rule(metric, threshold)}` on the job's held-out {metric.split('/')[0]} set, measured on "
        f"{judged(sweep)}; a verdict is solved seeds/seeds [95% Wilson interval of the solve probability]"
    )
    ends = [j.folder / "metrics.json" for j in sweep.jobs if j.folder is not None]
    ends = [p for p in ends if p.is_file()]
    start = sweep.start
    if ends:
        span = max(p.stat().st_mtime for p in ends) - start
        fit = sum(_number(j.metrics.get("fit_time_s")) or 0 for j in sweep.jobs)
        md.append(
            f"- time: {span:.0f} s from the sweep's start to its last metrics.json; {fit:.0f} s of fitting in all"
        )
    if note:
        md += ["", f"{note}."]
    if capacity:
        md += ["", f"## Smallest `{HIDDEN_KEY}` that solves each lag", ""]
        md += [
            f"Smallest swept hidden size at which more than half of the seeds reach `{rule(metric, threshold)}` "
            "(solved seeds/seeds [95% Wilson interval of the solve probability]); `> n`: no swept size up to n "
            "does (the share at n beside it).",
            "",
            _md_table(*capacity),
        ]
    md += ["", f"## Results by configuration ({metric}: mean ± sample std over seeds)", "", _md_table(g_header, g_rows)]
    md += [
        "",
        "`steps`: optimizer steps trained (mean ± std); `steps to target`: median step at which the "
        "validation target was reached (jobs that reached it/jobs).",
    ]
    if images:
        md += ["", "## Heatmap", ""] + [f"![{metric}]({img.name})" for img in images]
    unfinished = {status: [j for j in sweep.jobs if j.status == status] for status in STATUSES[1:]}
    for status, jobs in unfinished.items():
        if jobs:
            md += ["", f"## {status.capitalize()} jobs ({len(jobs)})", ""] + [f"- `{j.name}`: {j.note}" for j in jobs]
    markdown = "\n".join(md) + "\n"
    _write(out / "summary.md", markdown)
    written["markdown"] = out / "summary.md"
    written["tensorboard"] = write_tensorboard(out / "tb", images, markdown, start)

    if not quiet:
        print(f"\nSweep {sweep.folder}: {expected}; {counts}")
        if capacity:
            print(f"\nSmallest {HIDDEN_KEY} that solves each lag ({rule(metric, threshold)} in most seeds):")
            print(_text_table(*capacity))
        print(f"\nBy configuration ({rule(metric, threshold)} counts as solved):")
        print(_text_table(g_header, g_rows))
        for status, jobs in unfinished.items():
            for j in jobs:
                print(f"{status}: {j.name}: {j.note}")
        print("\nWrote:")
        for what, path in written.items():
            print(f"  {what:<12}{path}")
        inside = out.absolute().is_relative_to(sweep.folder.absolute())
        logdir = f"--logdir {sweep.folder}" if inside else f"--logdir_spec jobs:{sweep.folder},summary:{out / 'tb'}"
        print(f"  TensorBoard: tensorboard {logdir}  (HParams: every job; Images and Text: this summary)")
    return written
