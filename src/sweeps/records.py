"""The one reader of sweep folders and job records.

A multirun folder is what `python train.py -m ...` writes: `multirun.yaml` (the sweep's config,
with the swept overrides) and one folder per job holding `.hydra/overrides.yaml` and, once the job
has ended, `metrics.json` (status `completed`, `interrupted` or `failed`). `load_sweep` compares the
jobs the sweep asked for with the jobs that left a metrics.json, so a half-finished sweep is read
with its missing jobs listed; a job whose process died without a metrics.json (a segfault, an
out-of-memory kill) is `failed` ("killed"), known from the pid its job start left in `.hydra/pid`
(`callbacks.SweepOutcome`). `read_record` is the one reader of a job's metrics.json: every entry
point (the summary, the border search, a sweep going on after a crash) reads records through it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """A bad preset name or folder; the message is one sentence for the user."""


SUMMARY = "summary"  # sub-folder of the sweep folder that the summary owns

SEED_KEY = "seed"

CELL_KEY, HIDDEN_KEY, LAG_KEY = "model.cell", "model.hidden", "task.lag"

NOT_JOBS = {SUMMARY, ".submitit", ".hydra", "tb", "csv", "checkpoints"}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

STATUSES = ("completed", "interrupted", "failed", "missing")

PID_FILE = Path(".hydra") / "pid"  # in a job folder: the process that ran the job


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


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_Loader)


def sweep_overrides(hydra: dict[str, Any]) -> list[Any]:
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

    batches = BasicSweeper.split_arguments(sweep_overrides(hydra), None)
    return [list(job) for batch in batches for job in batch]


def job_folders(folder: Path) -> list[Path]:
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


def read_safely(path: Path, load: Any) -> tuple[Any, str]:
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


# metrics.json entries that hold a number (or null) in every record train.py writes: a string or
# a list there is a record edited or damaged by hand, never a result
NUMBER_KEYS = ("steps", "step", "batches", "epochs", "params", "fit_time_s", "wall_time_s", "torch_threads")
NUMBER_PARTS = {"chance": None, "target": ("step", "seconds")}  # None: every entry of the part


OBJECT_KEYS = ("chance", "target", "weights", "diagnostics")  # parts that hold named entries


def _misplaced(metrics: dict[str, Any]) -> tuple[str, Any, str] | None:
    """The first (key, value, what belongs there) of a record where something else stands."""
    for key in OBJECT_KEYS:
        if metrics.get(key) is not None and not isinstance(metrics[key], dict):
            return key, metrics[key], "an object"
    places = [(k, v) for k, v in metrics.items() if "/" in k or k in NUMBER_KEYS]
    for part, keys in NUMBER_PARTS.items():
        sub = metrics.get(part)
        if isinstance(sub, dict):
            places += [(f"{part}.{k}", v) for k, v in sub.items() if keys is None or k in keys]
    for key, value in places:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return key, value, "a number"
    return None


def read_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """A job's metrics.json, the one reader of job records (the summary, the border search, a sweep
    going on after its runner died): (the record, "") or (None, why it is not a record). A file that
    is not JSON, not an object, or holds a non-number where a number belongs (`"test/exact":
    "0.99"`) or a non-object where an object does (`"chance": "abc"`) is not a record: counting it
    would judge a job on a value no run measured, or end the summary in a traceback."""
    metrics, why = read_safely(path, json.loads)
    if why:
        return None, why
    if not isinstance(metrics, dict):
        return None, f"unreadable {path.name} (not a JSON object)"
    bad = _misplaced(metrics)
    if bad is not None:
        return None, f"{path.name} holds {bad[1]!r} at {bad[0]}, where {bad[2]} belongs (edited or damaged)"
    return metrics, ""


def read_job(path: Path) -> Job:
    """One job folder: its overrides, config, metrics and status. A job whose metrics.json is not a
    record (`read_record`) is `failed` with the reason. A job without metrics.json is `missing`
    while its process runs (or when nothing says which process ran it), and `failed` ("killed")
    once that process is gone: it ended without reaching any of train's records."""
    raw, bad_overrides = read_safely(path / ".hydra" / "overrides.yaml", lambda t: yaml.load(t, Loader=_Loader))
    overrides = [str(o) for o in raw] if isinstance(raw, list) else []
    job = Job(overrides=dict(_split(o) for o in overrides), folder=path, num=_num(path))
    job.raw = overrides
    config, _ = read_safely(path / ".hydra" / "config.yaml", lambda t: yaml.load(t, Loader=_Loader))
    job.config = config if isinstance(config, dict) else {}
    if (path / "metrics.json").exists():
        metrics, why = read_record(path / "metrics.json")
        if metrics is None:
            job.status, job.note = "failed", why
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
    pid, _ = read_safely(path / PID_FILE, int)
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
    folders = job_folders(folder)
    source, multirun = _sweep_config(folder, folders)
    hydra = multirun["hydra"]
    try:
        expected = expected_jobs(multirun) if source.name == "multirun.yaml" else None
    except Exception as err:  # the sweep's overrides in it cannot be parsed
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SweepError(f"{source} holds sweep overrides that cannot be read ({reason}).") from None
    jobs = _match_jobs([read_job(path) for path in folders], expected)
    keys, values = _swept_values(jobs)
    sweeper = hydra.get("sweeper") or {}
    summary = multirun.get("summary") if source.name == "multirun.yaml" else None
    if summary is None:  # Optuna: the jobs' own configs hold it
        first = next((p / ".hydra" / "config.yaml" for p in folders if (p / ".hydra" / "config.yaml").is_file()), None)
        try:
            summary = (load_yaml(first) or {}).get("summary") if first is not None else None
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


def _sweep_config(folder: Path, folders: list[Path]) -> tuple[Path, dict[str, Any]]:
    """(the file, its content) of the sweep's config. Hydra's basic sweeper writes multirun.yaml;
    the Optuna sweeper does not, but each of its jobs keeps the sweep's hydra config in
    .hydra/hydra.yaml."""
    source = folder / "multirun.yaml"
    if not source.is_file():
        source = next((p / ".hydra" / "hydra.yaml" for p in folders if (p / ".hydra" / "hydra.yaml").is_file()), source)
    if not source.is_file():
        raise SweepError(
            f"{folder} is not a multirun folder (no multirun.yaml and no job folders); pass the folder that "
            "`python train.py -m ...` printed as 'sweep output dir'."
        )
    try:
        multirun = load_yaml(source) or {}
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
    return source, multirun


def _match_jobs(read: list[Job], expected: list[list[str]] | None) -> list[Job]:
    """The jobs the sweep asked for, in job-number order (those never started as `missing`), then
    any other job folder found (copied in by hand, or every job of an Optuna study)."""
    found: dict[tuple[str, ...], Job] = {}
    extra: list[Job] = []
    for job in read:
        key = tuple(sorted(job.raw))
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
    return jobs + sorted(extra, key=lambda j: (j.num if j.num is not None else math.inf, j.name))


def _swept_values(jobs: list[Job]) -> tuple[list[str], dict[str, list[str]]]:
    """(every override key in the sweep's order, key -> its values): numbers in numeric order,
    names (cells) in the order the sweep gave them."""
    keys: list[str] = []
    values: dict[str, list[str]] = {}
    for job in jobs:
        for k, v in job.overrides.items():
            if k not in values:
                keys.append(k)
                values[k] = []
            if v not in values[k]:
                values[k].append(v)
    for k in keys:
        if all(number(v) is not None for v in values[k]):
            values[k].sort(key=number)
    return keys, values


def number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None
