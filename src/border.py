"""Capacity borders by search: for each (cell, vocab, lag), the smallest `model.hidden` that solves
the task in at least a given share of seeds, found on a ladder of sizes (`border.min` to
`border.max`, neighbours at most `border.resolution` apart) by galloping from a start size and
then bisecting between the largest failing and the smallest solving size, instead of a full grid
(README, section Capacity border by search).

How a job is judged (the grid preset's settings, conf/sweep/capacity.yaml): it trains until
val/exact holds its target, or until the validation loss stops improving (the convergence rule),
or at most `trainer.max_steps`; the test metric is measured on the checkpoint validation selects
(best.ckpt), not on whatever weights the budget ended on.

How the search runs: the (cell, vocab) pairs are searched side by side, each going through its lags
in increasing order and starting the next lag at the border the last one found. At a size the seeds
run in order only until the verdict is settled (3 of 5 solving when the share is 0.5), then the
sizes on both sides of the border get every seed, so their intervals rest on all of them. Each round
of jobs is one `train.py -m` multirun on the preset's Hydra launcher (`hydra/launcher=slurm` or any
other on the command line): the job list is a generated config group (`<folder>/.border/border_job/`),
so a job of the search is the grid's job with its overrides, config and run folder
(`<folder>/round_<n>/<cell>_v<vocab>_lag<lag>_h<hidden>_s<seed>/`). A job that completed in any round
is read, never run again, so `border.dir=<folder>` resumes a stopped search; the settings that shape
the jobs are kept in `<folder>/border.yaml`, and a resume with other settings is refused.
Solving assumes a monotone border (more units never hurt); the search checks only the sizes it visits
and reports the largest failing one it saw next to the border.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src import signals
from src.sweeps import PRESET_DIR, ROOT, SweepError, _md_table, _text_table, _write, share, weights_judged

PRESET = PRESET_DIR / "border.yaml"
SEARCH_KEYS = (
    "model",
    "task.vocab",
    "task.lag",
    "task.delay",
    "seed",
    "border.min",
    "border.max",
    "border.resolution",
    "border.context",
    "border.share",
    "border.threshold",
    "border.metric",
)
# keys each job's config group file sets: a command-line override of one would silently win over it
OWNED_KEYS = ("model.hidden", "task.context", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.sweeper.params")


# -- the search ------------------------------------------------------------------------------
def ladder(lo: int, hi: int, resolution: float) -> list[int]:
    """The sizes searched: lo, then each next size the largest at most `resolution` times the last
    (and at least one more), up to hi, which is always included. resolution 1: every integer."""
    sizes = [lo]
    while sizes[-1] < hi:
        sizes.append(min(hi, max(sizes[-1] + 1, math.floor(sizes[-1] * resolution + 1e-9))))
    return sizes


def ladder_search(n: int, start: int = 0) -> Generator[int, bool, tuple[int | None, int | None]]:
    """Search indices 0..n-1 of a ladder whose verdict is monotone (fails below some index, solves
    from it up): yields the index to try, is sent whether it solves, and returns (smallest solving
    index or None, largest failing index seen or None). From `start` it gallops (steps 1, 2, 4, ...)
    up while sizes fail, or down while they solve, then bisects: about 2 log2 of the distance
    between the start and the border."""
    start = min(max(start, 0), n - 1)
    solving: int | None = None
    failing: int | None = None
    step = 1
    if (yield start):
        solving = start
        while solving > 0:
            i = max(solving - step, 0)
            if (yield i):
                solving, step = i, step * 2
            else:
                failing = i
                break
    else:
        failing = start
        while True:
            if failing == n - 1:
                return None, failing
            i = min(failing + step, n - 1)
            if (yield i):
                solving = i
                break
            failing, step = i, step * 2
    while failing is not None and solving - failing > 1:
        mid = (failing + solving) // 2
        if (yield mid):
            solving = mid
        else:
            failing = mid
    return solving, failing


def drive(search: Generator[int, bool, Any], solves: Callable[[int], bool]) -> Any:
    """Run a ladder_search with a synchronous `solves(index)`; returns what the search returns."""
    try:
        i = next(search)
        while True:
            i = search.send(solves(i))
    except StopIteration as stop:
        return stop.value


def gallop_bisect(lo: int, hi: int, solves: Callable[[int], bool]) -> tuple[int | None, int | None]:
    """(smallest solving size, largest failing size seen) over every integer lo..hi, from lo."""
    found, failing = drive(ladder_search(hi - lo + 1), lambda i: solves(lo + i))
    return (None if found is None else lo + found), (None if failing is None else lo + failing)


def needed(share_: float, n: int) -> int:
    """Seeds of n that must solve for a size to solve: at least share x n, and at least 1."""
    return max(1, math.ceil(share_ * n - 1e-9))


def verdict(ok: Sequence[bool], n: int, need: int) -> bool | None:
    """Whether a size solves once `ok` (the verdicts of the seeds run so far, of n) settles it:
    True at `need` solving seeds, False when too few seeds are left to get there, else None."""
    if sum(ok) >= need:
        return True
    if len(ok) - sum(ok) > n - need:
        return False
    return None


# -- the settings ----------------------------------------------------------------------------
@dataclass
class Search:
    cells: list[str]
    vocabs: list[int] | None  # None: the task's own vocab (resolved by check)
    lags: list[int]
    seeds: list[int]
    min: int
    max: int
    share: float
    threshold: float
    metric: str
    preset: str  # the grid preset whose training settings every job takes
    overrides: list[str] = field(default_factory=list)  # passed to every job
    resolution: float = 1.0
    context: str | None = None  # None: the preset's task.context; "lag+K" or a number
    framing: str = "window"  # the task's, read by check: what the bits demanded count
    axis: str = "lag"  # the task key searched along: task.lag (echo_lag) or task.delay (copy_memory)
    held: tuple[int, int] | None = None  # copy_memory's (symbols, categories), read by check

    def bits(self, lag: int, vocab: int) -> float:
        """Bits the state must hold at once: a delay line of the last `lag` symbols where every step
        has a target (label framing); the one symbol at a fixed place of the window otherwise, held
        for `lag` steps (window framing: the network can latch it and ignore the rest); copy_memory's
        symbols x log2(categories) whatever the delay (the delay only lengthens the hold)."""
        if self.held is not None:
            return self.held[0] * math.log2(self.held[1])
        return (lag if self.framing == "label" else 1) * math.log2(vocab)

    def bits_text(self) -> str:
        if self.held is not None:
            return (
                f"symbols x log2(categories) = {self.held[0]} x log2({self.held[1]}) (copy_memory: every symbol "
                "held until its recall, delay + symbols steps later; the delay lengthens the hold, not the bits)"
            )
        if self.framing == "label":
            return "lag x log2(vocab) (label framing: a target at every step, so a delay line of the last lag symbols)"
        return (
            "log2(vocab) (window framing: one symbol at a fixed place of the window, held for lag steps; a delay "
            "line would need lag x log2(vocab))"
        )

    @property
    def sizes(self) -> list[int]:
        return ladder(self.min, self.max, self.resolution)

    def sizes_text(self) -> str:
        sizes = self.sizes
        return f"{self.min}..{self.max} (every integer)" if len(sizes) == self.max - self.min + 1 else str(sizes)

    def context_for(self, lag: int) -> int | None:
        if self.context is None:
            return None
        m = re.fullmatch(r"lag\s*\+\s*(\d+)", self.context)
        return lag + int(m.group(1)) if m else int(self.context)

    def rule(self) -> str:
        from src.sweeps import rule

        return rule(self.metric, self.threshold)

    def solved(self, metrics: dict[str, Any]) -> bool:
        from src.sweeps import meets

        return bool(meets(metrics.get(self.metric), self.metric, self.threshold))


def _ints(key: str, value: str) -> list[int]:
    try:
        out = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise SweepError(f"{key}={value} must be whole numbers separated by commas.") from None
    if key == "task.vocab" and min(out) < 2:
        raise SweepError(
            f"task.vocab={value} must be whole numbers of at least 2: a stream needs 2 symbols, and the bits "
            "demanded are lag x log2(vocab)."
        )
    if not out or min(out) < (0 if key == "seed" else 1):
        raise SweepError(f"{key}={value} must be {'non-negative' if key == 'seed' else 'positive'} whole numbers.")
    if len(set(out)) < len(out):
        raise SweepError(f"{key}={value} names a value twice.")
    return out


def parse(overrides: Sequence[str]) -> Search:
    """The preset with the command line on top; bad input is one sentence (SweepError)."""
    spec = yaml.safe_load(PRESET.read_text())["border"]
    given: dict[str, str] = {}
    rest = []
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or o.startswith("-"):
            raise SweepError(f"sweep.py border takes key=value overrides, not {o!r}.")
        if key in SEARCH_KEYS:
            given[key] = value
        elif key.lstrip("+~") in OWNED_KEYS:
            raise SweepError(
                f"{key} is set by the search for each job; the sizes are border.min, border.max and "
                "border.resolution, the window border.context (e.g. border.context=lag+1)."
            )
        else:
            rest.append(o)
    rest = [*spec.get("overrides", []), *rest]
    cells = given.get("model", ",".join(spec["cells"])).split(",")
    known = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    for c in cells:
        if c not in known:
            raise SweepError(f"model={c} is not a cell of conf/model/; choose from: {', '.join(known)}.")
    if len(set(cells)) < len(cells):
        raise SweepError(f"model={given['model']} names a cell twice.")
    vocab_text = given.get("task.vocab", ",".join(map(str, spec.get("vocabs") or [])))
    vocabs = _ints("task.vocab", vocab_text) if "task.vocab" in given or vocab_text else None
    if "task.lag" in given and "task.delay" in given:
        raise SweepError(
            "task.lag and task.delay are both given; a search steps along one: task.lag (echo_lag's window) or "
            "task.delay (copy_memory's blanks)."
        )
    axis = "delay" if "task.delay" in given else "lag"
    axis_spec = spec["axes"][axis]
    if axis == "delay":
        for key, why in (
            ("task.vocab", "copy_memory's vocab is task.categories + 2 (set task.categories=...)"),
            ("border.context", "copy_memory's length follows from the delay (delay + 2 x task.symbols)"),
        ):
            if key in given:
                raise SweepError(f"{key}={given[key]} does not apply to a search along task.delay: {why}.")
    lags = sorted(_ints(f"task.{axis}", given.get(f"task.{axis}", ",".join(map(str, spec["lags"])))))
    seeds = _ints("seed", given.get("seed", ",".join(map(str, spec["seeds"]))))
    lo = _ints("border.min", given.get("border.min", str(spec["min"])))[0]
    hi = _ints("border.max", given.get("border.max", str(spec["max"])))[0]
    if lo > hi:
        raise SweepError(f"border.min={lo} is above border.max={hi}; the sizes searched are border.min..border.max.")
    try:
        need = float(given.get("border.share", spec["share"]))
        threshold = float(given.get("border.threshold", spec["threshold"]))
        resolution = float(given.get("border.resolution", spec.get("resolution", 1.0)))
    except ValueError:
        raise SweepError("border.share, border.threshold and border.resolution must be numbers.") from None
    if not 0 < need <= 1:
        raise SweepError(f"border.share={need} must lie in (0, 1]: the share of seeds a size must solve.")
    if not 1 <= resolution <= 4:
        raise SweepError(
            f"border.resolution={resolution} must lie in [1, 4]: the largest ratio of neighbouring sizes "
            "(1: every integer, 1.41: about two sizes per doubling)."
        )
    context = given.get("border.context", spec.get("context"))
    context = None if context in (None, "null", "") else str(context)
    if context is not None and not re.fullmatch(r"lag\s*\+\s*\d+|\d+", context):
        raise SweepError(
            f"border.context={context} must be a window length (e.g. 9) or lag+K (e.g. lag+1: the shortest "
            "window that holds the target); null keeps the preset's."
        )
    metric = given.get("border.metric", axis_spec["metric"])
    if not re.fullmatch(r"test/\w+", metric):
        raise SweepError(
            f"border.metric={metric} must be a test metric a job records, e.g. test/exact (every target of a "
            "window right) or test/acc (each target)."
        )
    search = Search(cells, vocabs, lags, seeds, lo, hi, need, threshold, metric, axis_spec["preset"], rest)
    search.resolution, search.context, search.axis = resolution, context, axis
    return search


# -- jobs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobKey:
    cell: str
    vocab: int
    lag: int
    hidden: int
    seed: int
    axis: str = "lag"  # what `lag` holds: task.lag, or copy_memory's task.delay

    @property
    def name(self) -> str:
        return job_name(self.cell, self.vocab, self.lag, self.hidden, self.seed, self.axis)


def job_name(cell: str, vocab: int, lag: int, hidden: int, seed: int, axis: str = "lag") -> str:
    return f"{cell}_v{vocab}_{axis}{lag}_h{hidden}_s{seed}"


def job_overrides(search: Search, key: JobKey | tuple[str, int | None, int, int, int]) -> list[str]:
    """What sets one job apart from the preset, as train.py overrides (also the group file's content)."""
    cell, vocab, lag, hidden, seed = (
        (key.cell, key.vocab, key.lag, key.hidden, key.seed) if isinstance(key, JobKey) else key
    )
    context = search.context_for(lag)
    given = vocab is not None and search.axis == "lag"  # copy_memory's vocab follows from task.categories
    out = [f"model={cell}", *([f"task.vocab={vocab}"] if given else []), f"task.{search.axis}={lag}"]
    out += [*([f"task.context={context}"] if context is not None else [])]
    if context is not None and "task.framing=label" in search.overrides:
        out.append(f"task.out_len={context}")  # label framing: a target (or a masked step) at every step
    out += [f"model.hidden={hidden}", f"seed={seed}"]
    return out


def cell_overrides(search: Search) -> list[str]:
    """The user's `model.<key>=<value>` overrides: they belong to the cell's config (`model.r_min`
    exists only for lru), which a round's runner has not chosen when it applies its command line
    (the cell comes with each job), so they travel in the job's file."""
    return [o for o in search.overrides if o.startswith("model.") and "=" in o]


def job_file(search: Search, key: JobKey) -> str:
    """The config group option `+border_job=<name>`: the job's own settings, after the preset."""
    values: dict[str, Any] = {}
    for o in [*cell_overrides(search), *job_overrides(search, key)[1:]]:
        path, value = o.split("=", 1)
        node = values
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    text = yaml.safe_dump(values, sort_keys=False)
    return f"# @package _global_\n# {key.name}: written by sweep.py border\ndefaults:\n  - override /model: {key.cell}\n{text}"


def compose_job(search: Search, cell: str, vocab: int | None, lag: int, hidden: int, seed: int, folder: Path) -> Any:
    """The config `train.py +sweep=<preset> <the job's overrides>` would run (vocab None: the task's own)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    job = job_overrides(search, (cell, vocab, lag, hidden, seed))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+sweep={search.preset}", "progress=false", *search.overrides, *job])
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    return cfg


def check(search: Search, folder: Path) -> None:
    """Every (cell, vocab, lag) at both ends of the sizes through train's own checks, before any
    job; a search without `task.vocab` takes the vocab the task's config gives."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from src.config import ConfigError
    from src.run import validate

    for cell in search.cells:
        for vocab in search.vocabs or [None]:
            for lag in search.lags:
                for h in (search.min, search.max):
                    try:
                        cfg = compose_job(search, cell, vocab, lag, h, search.seeds[0], folder)
                        task = validate(cfg)[0]
                    except (HydraException, OmegaConfBaseException, ConfigError) as err:
                        reason = str(err).strip().splitlines()[0].rstrip(".")
                        given = f" task.vocab={vocab}" if vocab is not None else ""
                        raise SweepError(
                            f"the job model={cell}{given} task.{search.axis}={lag} model.hidden={h} would fail: {reason}."
                        ) from None
    # what the task's own class made of the config (copy_memory's vocab: categories, blank, delimiter)
    if search.vocabs is None:
        search.vocabs = [task.vocab]
    search.framing = task.framing
    if search.axis == "delay":
        if task.family != "copy_memory":
            raise SweepError(
                f"task.delay steps copy_memory's blanks; the preset {search.preset} trains task {task.name}, "
                "which has no delay."
            )
        search.held = (task.symbols, task.categories)
    elif search.framing == "window" and task.out_len != 1:
        raise SweepError(
            f"sweep.py border counts the bits of one target symbol in a window; task.out_len={task.out_len} "
            "is not supported (use task.framing=label for a target at every step)."
        )


LAUNCH_KEYS = ("hydra/launcher", "hydra.launcher.")  # where jobs run, not what they train


def shaping(overrides: Sequence[str]) -> list[str]:
    """The overrides that shape what jobs train, not where they run."""
    return [o for o in overrides if not o.lstrip("+~").startswith(LAUNCH_KEYS)]


def settings(search: Search) -> dict[str, Any]:
    """What shapes every job beyond its cell, vocab, lag, size and seed (not where it runs: a
    search started here may go on on SLURM)."""
    return {"preset": search.preset, "context": search.context, "overrides": shaping(search.overrides)}


def lock(folder: Path) -> Any:
    """Hold <folder>/.border/lock for this process's search (released when the process ends, however
    it ends). A second search on the same folder would run the same jobs into the same rounds:
    refused in one sentence naming the process that holds it."""
    import fcntl

    path = folder / ".border" / "lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as err:
        raise SweepError(
            f"border.dir={folder} cannot be written ({err.strerror or err}); pick a writable folder."
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise SweepError(
            f"border.dir={folder} is in use by another search ({owner}); two searches on one folder would run "
            "the same jobs twice: wait for it to end, or pick another border.dir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def claim(search: Search, folder: Path) -> None:
    """border.yaml in the folder: written by the first search, compared by every resume."""
    path = folder / "border.yaml"
    mine = settings(search)
    if path.exists():
        theirs = yaml.safe_load(path.read_text()) or {}
        if theirs != mine:
            diff = [f"{k} {theirs.get(k)!r} there, {mine[k]!r} now" for k in mine if theirs.get(k) != mine[k]]
            raise SweepError(
                f"border.dir={folder} holds a search whose jobs ran with other settings ({'; '.join(diff)}); "
                "its jobs would not be the same jobs: pick a new border.dir."
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    _write(path, yaml.safe_dump(mine, sort_keys=False))


def read_record(job: Path) -> dict[str, Any] | None:
    """metrics.json of a job that ended with a verdict: completed, or failed because its loss
    diverged; None: run it (again)."""
    try:
        metrics = json.loads((job / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict):
        return None
    if metrics.get("status") == "completed":
        return metrics
    if metrics.get("status") == "failed" and str(metrics.get("error", "")).startswith("train/loss became"):
        return metrics  # it diverged: a verdict on this size and seed (not solved)
    return None  # interrupted, killed, a full disk...: not a verdict, run it again


def find_jobs(folder: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (folder, metrics) of every job with a record, the latest round winning."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for round_dir in sorted(p for p in folder.glob("round_*") if p.is_dir()):
        for job in sorted(p for p in round_dir.iterdir() if p.is_dir()):
            record = read_record(job)
            if record is not None:
                found[job.name] = (job, record)
    return found


def no_verdict(folder: Path, key: JobKey) -> str:
    """Why a job that ran gave no verdict, from its latest metrics.json (a full disk, a crash...)."""
    for job in sorted(folder.glob(f"round_*/{key.name}"), reverse=True):
        try:
            metrics = json.loads((job / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        return f"job {job} {metrics.get('status', 'ended')}: {metrics.get('error', 'no reason recorded')}"
    return f"job {key.name} ended without a record (metrics.json); see {folder}/round_*.log"


def job_line(search: Search, name: str, metrics: dict[str, Any]) -> str:
    value = metrics.get(search.metric)
    if metrics.get("status") != "completed":
        return f"  {name}: failed ({metrics.get('error', 'no reason recorded')}); counted as not solved"
    target = metrics.get("target") or {}
    why = metrics.get("stopped_by") or ("target" if target.get("reached") else "?")
    return (
        f"  {name}: {search.metric} {value:.3f} ({'solved' if search.solved(metrics) else 'not solved'}; "
        f"stopped by {why} at step {metrics.get('steps')}, {metrics.get('fit_time_s', float('nan')):.1f} s)"
    )


class Stopped(Exception):
    """The user (Ctrl-C) or a scheduler (SIGTERM) stopped the search; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def launch(
    search: Search, folder: Path, number: int, keys: Sequence[JobKey], stops: signals.Forward | None = None
) -> None:
    """One round: the jobs as a `train.py -m` multirun on the preset's launcher, with its output in
    <folder>/round_<n>.log and a line here for each job as it finishes. Ctrl-C or SIGTERM (`stops`,
    which owns them for the whole search) is passed to the runner, which stops its jobs at a batch
    boundary; then Stopped is raised."""
    if stops is None:
        with signals.Forward() as own:
            return launch(search, folder, number, keys, own)
    groups = folder / ".border" / "border_job"
    groups.mkdir(parents=True, exist_ok=True)
    for key in keys:
        _write(groups / f"{key.name}.yaml", job_file(search, key))
    round_dir = folder / f"round_{number:03d}"
    in_job_files = set(cell_overrides(search))
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        f"+sweep={search.preset}",
        "hydra.sweeper.params=null",  # the preset's own grid: not this round's jobs
        f"hydra.searchpath=[file://{(folder / '.border').resolve()}]",
        "+border_job=" + ",".join(k.name for k in keys),
        f"hydra.sweep.dir={round_dir}",
        "hydra.sweep.subdir=${hydra.runtime.choices.border_job}",
        "progress=false",
        *(o for o in search.overrides if o not in in_job_files),
    ]
    with open(folder / f"round_{number:03d}.log", "a") as log:
        log.write("$ " + " ".join(cmd[1:]) + "\n")
        log.flush()
        env = {k: v for k, v in os.environ.items() if k != signals.STOP_FILE_ENV}  # a runner of its own
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, env=env,
            preexec_fn=signals.stop_with_parent(),
        )  # fmt: skip
        printed: set[str] = set()

        def poll() -> None:
            for key in keys:
                if key.name not in printed:
                    record = read_record(round_dir / key.name)
                    if record is not None:
                        printed.add(key.name)
                        print(job_line(search, key.name, record), flush=True)

        stops.wait(proc, poll)
        poll()
    if stops.got:
        raise Stopped(stops.got[0])


# -- the search of one (cell, vocab) over its lags ---------------------------------------------
@dataclass
class Point:
    """The search of one (cell, vocab, lag): every job it ran, and what the bisection concluded."""

    cell: str
    vocab: int
    lag: int
    jobs: list[dict[str, Any]] = field(default_factory=list)  # one record per job, in the order read
    solving: int | None = None
    failing: int | None = None
    done: bool = False


def job_record(search: Search, key: JobKey, metrics: dict[str, Any]) -> dict[str, Any]:
    memory = (metrics.get("diagnostics") or {}).get("memory") or {}
    return {
        "hidden": key.hidden,
        "seed": key.seed,
        "ok": search.solved(metrics),
        "status": metrics.get("status"),
        "value": metrics.get(search.metric),
        "step": (metrics.get("target") or {}).get("step"),
        "steps": metrics.get("steps"),
        "stopped_by": metrics.get("stopped_by"),
        "params": metrics.get("params"),
        "weights": (metrics.get("weights") or {}).get("test") or metrics.get("tested_checkpoint"),
        "memory": memory.get("score"),
        "memory_delays": memory.get("delays"),
        "memory_kind": memory.get("kind"),
        "memory_chance": memory.get("chance"),
    }


class Lane:
    """One (cell, vocab): its lags in increasing order, each a ladder search that starts at the
    border the previous lag found (a longer lag rarely needs fewer units; the search still checks
    both sides). `wants(records)` says which jobs it needs next; None of them: it is finished."""

    def __init__(self, search: Search, cell: str, vocab: int):
        self.search, self.cell, self.vocab = search, cell, vocab
        self.sizes = search.sizes
        self.need = needed(search.share, len(search.seeds))
        self.points: list[Point] = []
        self.results: dict[JobKey, dict[str, Any]] = {}
        self.start = 0
        self.lags = list(search.lags)
        self._next_lag()

    def _next_lag(self) -> None:
        if not self.lags:
            self.point = None
            return
        self.point = Point(self.cell, self.vocab, self.lags.pop(0))
        self.points.append(self.point)
        self.gen = ladder_search(len(self.sizes), self.start)
        self.index: int | None = next(self.gen)

    def key(self, hidden: int, seed: int) -> JobKey:
        assert self.point is not None
        return JobKey(self.cell, self.vocab, self.point.lag, hidden, seed, self.search.axis)

    def _read(self, key: JobKey, records: dict[str, tuple[Path, dict[str, Any]]]) -> bool:
        if key in self.results:
            return True
        if key.name not in records:
            return False
        self.results[key] = records[key.name][1]
        assert self.point is not None
        self.point.jobs.append(job_record(self.search, key, self.results[key]))
        return True

    def wants(self, records: dict[str, tuple[Path, dict[str, Any]]]) -> list[JobKey]:
        seeds = self.search.seeds
        while self.point is not None:
            if self.index is not None:  # searching: the seeds at this size until the verdict settles
                h = self.sizes[self.index]
                ok: list[bool] = []
                for s in seeds:
                    if not self._read(self.key(h, s), records):
                        break
                    ok.append(self.search.solved(self.results[self.key(h, s)]))
                decided = verdict(ok, len(seeds), self.need)
                if decided is None:
                    more = min(self.need - sum(ok), len(seeds) - self.need + 1 - (len(ok) - sum(ok)))
                    return [self.key(h, s) for s in seeds[len(ok) : len(ok) + more]]
                try:
                    self.index = self.gen.send(decided)
                except StopIteration as stop:
                    solving, failing = stop.value
                    self.point.solving = None if solving is None else self.sizes[solving]
                    self.point.failing = None if failing is None else self.sizes[failing]
                    self.index = None
                    self.start = len(self.sizes) - 1 if solving is None else solving
                continue
            # settled: every seed at the sizes on both sides of the border, for their intervals
            bounds = [h for h in (self.point.solving, self.point.failing) if h is not None]
            missing = [self.key(h, s) for h in bounds for s in seeds if not self._read(self.key(h, s), records)]
            if missing:
                return missing
            self.point.done = True
            self._next_lag()
        return []


def search_all(search: Search, folder: Path, stops: signals.Forward) -> tuple[list[Point], int | None]:
    """Rounds of jobs until every lane is finished or a signal came (`stops`); (points, the signal
    that stopped it or None)."""
    lanes = [Lane(search, c, v) for c in search.cells for v in search.vocabs or []]
    launched: set[JobKey] = set()
    number = 1 + max([int(p.name.split("_")[1]) for p in folder.glob("round_[0-9]*") if p.is_dir()] or [0])
    stopped = None
    while True:
        records = find_jobs(folder)
        wanted: list[JobKey] = []
        for lane in lanes:
            keys = lane.wants(records)
            for k in keys:
                if k in launched:  # run once in this search and still without a verdict
                    raise SweepError(f"{no_verdict(folder, k)}; the search stops here, its jobs so far are kept.")
            wanted += keys
        if not wanted:
            break
        if stops.got:  # between rounds: no new round
            stopped = stops.got[0]
            break
        print(f"round {number}: {len(wanted)} job{'s' if len(wanted) > 1 else ''}", flush=True)
        launched.update(wanted)
        try:
            launch(search, folder, number, wanted, stops)
        except Stopped as stop:
            stopped = stop.signum
            records = find_jobs(folder)
            for lane in lanes:
                lane.wants(records)  # what finished before the stop still counts
            break
        number += 1
    return [p for lane in lanes for p in lane.points if p.jobs], stopped


# -- the result ------------------------------------------------------------------------------
def header(search: Search) -> list[str]:
    """The table's columns: the axis column is named after the key searched (lag or delay)."""
    return [search.axis if h == "lag" else h for h in HEADER]


HEADER = [
    "cell",
    "vocab",
    "lag",
    "smallest solving hidden",
    "solved there [95% CI]",
    "largest failing hidden",
    "solved there [95% CI]",
    "median steps to target",
    "params",
    "bits demanded",
    "state units",
    "sizes run (in order)",
]


def state_units(cell: str, hidden: int) -> int:
    """Real numbers the recurrent state holds, as the cell declares (src/models/cells/)."""
    from src.models import cells

    return cells.state_units(cell, hidden)


def result(search: Search, points: Sequence[Point]) -> Any:
    """One row per (cell, vocab, lag), from every job the search ran grouped by size (pandas):
    solved seeds/seeds [95% Wilson interval] at the smallest solving and the largest failing size,
    the median step at which the solving size's jobs reached the validation target, its parameters,
    the bits the task demands (lag x log2 vocab) and the state units of the solving size."""
    import pandas as pd

    jobs = pd.DataFrame(
        [{"cell": p.cell, "vocab": p.vocab, "lag": p.lag, **j} for p in points for j in p.jobs],
        columns=["cell", "vocab", "lag", "hidden", "seed", "ok", "step", "params"],
    ).astype({"step": "float64"})
    sizes = jobs.groupby(["cell", "vocab", "lag", "hidden"], sort=False).agg(
        ok=("ok", "sum"),
        n=("ok", "size"),
        reached=("step", "count"),
        step=("step", "median"),
        params=("params", "first"),
    )

    def at(p: Point, h: int | None) -> Any:
        return None if h is None else sizes.loc[(p.cell, p.vocab, p.lag, h)]

    rows = []
    for p in points:
        win, lose = at(p, p.solving), at(p, p.failing)
        rows.append(
            {
                "cell": p.cell,
                "vocab": str(p.vocab),
                search.axis: str(p.lag),
                "smallest solving hidden": f"{'?' if p.solving is None else p.solving} (unfinished)"
                if not p.done
                else str(p.solving)
                if p.solving is not None
                else f"> {search.max}",
                "solved there [95% CI]": share(int(win["ok"]), int(win["n"])) if win is not None else "-",
                "largest failing hidden": "?"
                if not p.done
                else str(p.failing)
                if p.failing is not None
                else f"none: {search.min} solves",
                "solved there [95% CI] ": share(int(lose["ok"]), int(lose["n"])) if lose is not None else "-",
                "median steps to target": f"{win['step']:.0f} ({win['reached']:.0f}/{win['n']:.0f})"
                if win is not None and win["reached"]
                else "-",
                "params": str(int(win["params"])) if win is not None else "-",
                "bits demanded": f"{search.bits(p.lag, p.vocab):.1f}",
                "state units": str(state_units(p.cell, p.solving)) if p.solving is not None else "-",
                "sizes run (in order)": ", ".join(dict.fromkeys(str(j["hidden"]) for j in p.jobs)),
            }
        )
    # the two "solved there" columns differ by a trailing space here (pandas columns are unique);
    # border.csv and the tables print header(search)
    cols = header(search)
    return pd.DataFrame(rows, columns=[*cols[:6], cols[6] + " ", *cols[7:]])


def job_table(search: Search, points: Sequence[Point]) -> Any:
    """jobs.csv: every job the search judged, in the order it ran them per (cell, vocab, lag): its
    size, seed, metric, verdict, why it stopped and when it reached the validation target."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "cell": p.cell,
                "vocab": p.vocab,
                search.axis: p.lag,
                "hidden": j["hidden"],
                "seed": j["seed"],
                search.metric: j["value"],
                "solved": j["ok"],
                "stopped_by": j["stopped_by"],
                "steps": j["steps"],
                "step_to_target": j["step"],
                "params": j["params"],
            }  # fmt: skip
            for p in points
            for j in p.jobs
        ],
        columns=[
            "cell",
            "vocab",
            search.axis,
            "hidden",
            "seed",
            search.metric,
            "solved",
            "stopped_by",
            "steps",
            "step_to_target",
            "params",
        ],  # fmt: skip
    )


def plot(search: Search, points: Sequence[Point], path: Path) -> Path:
    """border.png: left, the smallest solving hidden against the lag, one line per (cell, vocab),
    with the largest failing size as an x below it (a triangle at border.max: none solved);
    right, the state units of that size against the bits the task demands (lag x log2 vocab),
    beside the line of one state unit per bit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    lines = {(p.cell, p.vocab): [] for p in points}
    for p in points:
        lines[(p.cell, p.vocab)].append(p)
    for i, ((cell, vocab), pts) in enumerate(lines.items()):
        color = f"C{i % 10}"
        label = f"{cell}, vocab {vocab}"
        solved = [p for p in pts if p.solving is not None]
        left.plot([p.lag for p in solved], [p.solving for p in solved], "o-", color=color, label=label)
        fails = [p for p in pts if p.failing is not None and p.solving is not None]
        left.plot([p.lag for p in fails], [p.failing for p in fails], "x", color=color, markersize=8)
        never = [p for p in pts if p.solving is None]
        left.plot([p.lag for p in never], [search.max] * len(never), "^", color=color, markersize=9)
        bits = [search.bits(p.lag, p.vocab) for p in solved]
        right.plot(bits, [state_units(cell, p.solving) for p in solved], "o-", color=color, label=label)
    top = max([search.max, *(state_units(p.cell, p.solving) for p in points if p.solving is not None)])
    right.plot([1, top], [1, top], ":", color="grey", label="1 state unit per bit")
    for ax in (left, right):
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
    shown = sorted({h for p in points for h in (p.solving, p.failing) if h is not None}
                   | ({search.max} if any(p.solving is None for p in points) else set()))  # fmt: skip
    left.set_yticks(shown if len(shown) <= 12 else [2**i for i in range(1, int(math.log2(search.max)) + 1)])
    left.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_xticks(search.lags)
    left.set_xlabel(search.axis)
    left.set_ylabel("smallest solving model.hidden")
    left.set_title("o: smallest solving, x: largest failing, ^: none up to border.max", fontsize=9)
    left.legend(fontsize=8)
    right.set_xscale("log", base=2)
    right.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    right.set_xlabel(
        "bits demanded = "
        + (
            "symbols x log2(categories), held the delay"
            if search.held is not None
            else "lag x log2(vocab): a delay line"
            if search.framing == "label"
            else "log2(vocab), held lag steps"
        )
    )
    right.set_ylabel("state units at the border")
    right.legend(fontsize=8)
    fig.suptitle(
        f"capacity border: {search.metric} >= {search.threshold} on >= {search.share:.0%} of seeds {search.seeds}",
        fontsize=10,
    )
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def memory_plot(
    points: Sequence[Point], path: Path, axis: str = "lag", held: tuple[int, int] | None = None
) -> Path | None:
    """memory.png: what the smallest solving networks hold, one panel per (cell, vocab): the memory
    probe's score for the input k steps back (end-of-run diagnostics, a ridge readout from the
    state; mean over the solved seeds at the border size), one line per lag, chance dotted.
    None when no job recorded the probe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple[str, int], list[tuple[int, list[int], list[float], Any, Any]]] = {}
    for p in points:
        curves = [j for j in p.jobs if j["hidden"] == p.solving and j["ok"] and j.get("memory")]
        if not curves:
            continue
        delays = curves[0]["memory_delays"]
        # copy_memory (held: symbols, categories): the copied symbols lie delay + symbols .. delay +
        # 2 symbols - 1 steps before the window's last step; every other input is a blank or the
        # delimiter, a constant any readout "recalls" (not scored since the probe knows it; a record
        # written before has 1.0 there)
        shown = range(p.lag + held[0], p.lag + 2 * held[0]) if held is not None else delays
        mean = [  # a delay not scored (None) or not shown: a gap in the line
            float("nan")
            if curves[0]["memory"][i] is None or delays[i] not in shown
            else sum(c["memory"][i] for c in curves) / len(curves)
            for i in range(len(delays))
        ]
        if all(math.isnan(m) for m in mean):
            continue  # the probe reads at most 32 steps back: copy_memory's symbols at delay 40 lie beyond
        panels.setdefault((p.cell, p.vocab), []).append(
            (p.lag, delays, mean, curves[0]["memory_kind"], curves[0]["memory_chance"])
        )
    if not panels:
        return None
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(6.4, 3.2 * len(panels) + 0.6), 3.6), layout="constrained", squeeze=False
    )
    for ax, ((cell, vocab), lines) in zip(axes[0], panels.items(), strict=True):
        for i, (lag, delays, mean, _kind, chance) in enumerate(lines):
            size = next(p.solving for p in points if (p.cell, p.vocab, p.lag) == (cell, vocab, lag))
            ax.plot(delays, mean, "o-", color=f"C{i % 10}", markersize=3, label=f"{axis} {lag} (h={size})")
            if axis == "lag":  # copy_memory's symbols sit at delay + symbols .. delay + 2 symbols - 1
                ax.axvline(lag, color=f"C{i % 10}", alpha=0.25)
            if chance is not None:
                ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{cell}, vocab {vocab}", fontsize=9)
        ax.set_xlabel("k: input k steps back")
        ax.set_ylabel(f"readout {lines[0][3] or 'score'} from the state")
        ax.set_ylim(-0.02, 1.02)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "ridge readout of the input k steps back from the state of the smallest solving networks\n"
        "(mean over their solved seeds; "
        + (
            "vertical line: the trained lag; dotted: chance)"
            if axis == "lag"
            else "\nscored only where the input varies: the copied symbols; dotted: chance)"
        ),
        fontsize=9,
    )
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def run_border(overrides: Sequence[str], root: Path = Path("outputs/border")) -> tuple[int, Path]:
    """`sweep.py border [overrides]`: search, print the table, write border.md, border.csv,
    border.png, memory.png, border.json (how it ended) and a TensorBoard event file (the plots and
    the table) into the folder. `border.dir=<folder>` picks (or resumes) the folder.
    Returns (exit code: 0, 130 after Ctrl-C, 143 after SIGTERM; folder)."""
    given = [o for o in overrides if o.startswith("border.dir=")]
    overrides = [o for o in overrides if not o.startswith("border.dir=")]
    search = parse(overrides)
    folder = Path(given[-1].split("=", 1)[1]) if given else root / time.strftime("%Y-%m-%d_%H-%M-%S")
    check(search, folder)
    assert search.vocabs is not None
    held = lock(folder)  # noqa: F841 - held until this process ends
    claim(search, folder)
    print(
        f"border search in {folder}: cells {search.cells}, vocabs {search.vocabs}, {search.axis}s {search.lags}, hidden "
        f"{search.sizes_text()}, seeds {search.seeds}, solved: {search.rule()} on >= {search.share:.0%} of seeds; each round is one train.py -m (log: "
        f"{folder}/round_<n>.log)",
        flush=True,
    )
    t0 = time.perf_counter()
    with signals.Forward() as stops:  # from here a signal ends the search with its record written
        points, stopped = search_all(search, folder, stops)
        code = 0 if stopped is None else 128 + stopped
        status = {"status": "completed" if stopped is None else "interrupted", "exit_code": code}
        if stopped is not None:
            status["signal"] = signal.Signals(stopped).name
            print(
                f"\n{signal.Signals(stopped).name}: the search stopped; finished jobs are kept, run the same command "
                f"with border.dir={folder} to go on",
                file=sys.stderr,
            )
        write_result(search, folder, points, time.perf_counter() - t0, overrides, status)
        if stopped is None and stops.got:  # came while the result was written: it is complete
            code = 128 + stops.got[0]
            print(
                f"\n{signal.Signals(stops.got[0]).name} while the result was written; it is complete", file=sys.stderr
            )
    return code, folder


def write_result(
    search: Search,
    folder: Path,
    points: list[Point],
    wall: float,
    overrides: Sequence[str],
    status: dict[str, Any] | None = None,
) -> None:
    from src.files import write_json
    from src.sweeps import write_tensorboard

    command = " ".join(["python sweep.py border", *overrides])
    same = " ".join(shaping(overrides))  # the same search, wherever its jobs ran
    inherited = False  # whether another search in this folder ran jobs this one reads (their time is theirs)
    try:  # the same search resumed: its time so far is added, so a rerun that trains nothing keeps it
        before = json.loads((folder / "border.json").read_text())
        if before.get("search") != same:  # another search in this folder (other lags, cells)
            inherited = True
            raise ValueError
        wall, starts = wall + float(before.get("wall_s", 0.0)), int(before.get("starts", 1)) + 1
        inherited = bool(before.get("inherited", False))
    except (OSError, ValueError, TypeError, AttributeError):
        starts = 1
    stops = Counter(str(j.get("stopped_by") or j.get("status")) for p in points for j in p.jobs)
    n_jobs = sum(stops.values())
    note = (
        f"Smallest `model.hidden` of {search.sizes_text()} at which at least {search.share:.0%} of seeds "
        f"{search.seeds} reach `{search.rule()}` "
        f"(training settings of the `{search.preset}` preset"
        f"{'' if search.context is None else f', task.context={search.context}'}; {search.metric} measured on "
        f"{weights_judged(j['weights'] for p in points for j in p.jobs)}; jobs stopped by "
        f"{', '.join(f'{k} ({n})' for k, n in stops.items()) or 'nothing yet'}); solved there: solved seeds/seeds "
        f"[95% Wilson interval]; bits demanded = "
        f"{search.bits_text()}"
        "; state units = real numbers in the state: hidden (2 x hidden for lstm's (h, c) and for lru's "
        f"complex units). {n_jobs} job{'' if n_jobs == 1 else 's'}, {wall:.0f} s"
        f"{f' over {starts} starts of the search' if starts > 1 else ''}"
        f"{' (its own time: it read jobs that an earlier search in this folder ran)' if inherited else ''}."
    )
    unfinished = [p for p in points if not p.done]
    if unfinished:
        note += (
            " Unfinished (the search stopped): "
            + ", ".join(f"{p.cell} vocab {p.vocab} {search.axis} {p.lag}" for p in unfinished)
            + "."
        )
    table = result(search, points)
    rows = table.values.tolist()
    markdown = f"# Capacity border\n\n`{command}`\n\n{note}\n\n{_md_table(header(search), rows)}\n"
    _write(folder / "border.md", markdown)
    _write(folder / "border.csv", table.to_csv(index=False, header=header(search), lineterminator="\n"))
    _write(folder / "jobs.csv", job_table(search, points).to_csv(index=False, lineterminator="\n"))
    written = [folder / "border.md", folder / "border.csv"]
    if points:
        written.append(plot(search, points, folder / "border.png"))
        curves = memory_plot([p for p in points if p.done], folder / "memory.png", search.axis, search.held)
        if curves is not None:
            written.append(curves)
    written.append(write_tensorboard(folder, written[2:], markdown, time.time()))
    written.insert(2, folder / "jobs.csv")
    write_json(
        folder / "border.json",
        {
            **(status or {"status": "completed", "exit_code": 0}),
            "jobs": n_jobs,
            "command": command,
            "search": same,
            "wall_s": wall,
            "starts": starts,
            "inherited": inherited,
        },
    )
    print(f"\n{note}\n\n{_text_table(header(search), rows)}\n\nWrote " + ", ".join(str(p) for p in written))
    print(f"  TensorBoard: tensorboard --logdir {folder}  (Images: the plots, Text: the table)")
