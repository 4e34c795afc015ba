"""Capacity borders by search: for each (cell, lag), the smallest `model.hidden` that solves the
task in at least a given share of seeds, found by galloping (doubling from the smallest size until
one solves) and then bisecting between the last failing and the first solving size, instead of a
full grid (README, section Capacity border by search).

A job is one training run (`src.run.train` in this process, on the config train.py composes) with
the training settings of the grid preset named in conf/sweep/border.yaml, so a job of the search and
the same job of the grid are the same run. Each job writes `<folder>/<cell>_lag<lag>_h<h>_s<seed>/`;
a job folder whose metrics.json says `completed` is read, not run again, so a search stopped with
Ctrl-C goes on where it stopped. Solving assumes a monotone border (more units never hurt); the
search checks only the sizes it visits, and reports the largest failing one it saw next to the border.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.sweeps import PRESET_DIR, ROOT, SweepError, _md_table, _text_table, _write, share, wilson

PRESET = PRESET_DIR / "border.yaml"
SEARCH_KEYS = ("model", "task.lag", "seed", "border.min", "border.max", "border.share", "border.threshold")


# -- the search ------------------------------------------------------------------------------
def gallop_bisect(lo: int, hi: int, solves: Callable[[int], bool]) -> tuple[int | None, int | None]:
    """(smallest solving size, largest failing size seen) over the integers lo..hi, assuming
    `solves` is monotone: doubling from lo until a size solves, then bisecting. About
    2 log2(hi / lo) calls; (None, hi) when hi fails, (lo, None) when lo already solves."""
    h, failing = lo, None
    while not solves(h):
        failing = h
        if h >= hi:
            return None, failing
        h = min(2 * h, hi)
    solving = h
    while failing is not None and solving - failing > 1:
        mid = (failing + solving) // 2
        if solves(mid):
            solving = mid
        else:
            failing = mid
    return solving, failing


# -- the settings ----------------------------------------------------------------------------
@dataclass
class Search:
    cells: list[str]
    lags: list[int]
    seeds: list[int]
    min: int
    max: int
    share: float
    threshold: float
    metric: str
    preset: str  # the grid preset whose training settings every job takes
    overrides: list[str] = field(default_factory=list)  # passed to every job


def _ints(key: str, value: str) -> list[int]:
    try:
        out = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise SweepError(f"{key}={value} must be whole numbers separated by commas.") from None
    if not out or min(out) < (0 if key == "seed" else 1):
        raise SweepError(f"{key}={value} must be {'non-negative' if key == 'seed' else 'positive'} whole numbers.")
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
        else:
            rest.append(o)
    rest = [*spec.get("overrides", []), *rest]
    cells = given.get("model", ",".join(spec["cells"])).split(",")
    known = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    for c in cells:
        if c not in known:
            raise SweepError(f"model={c} is not a cell of conf/model/; choose from: {', '.join(known)}.")
    lags = _ints("task.lag", given.get("task.lag", ",".join(map(str, spec["lags"]))))
    seeds = _ints("seed", given.get("seed", ",".join(map(str, spec["seeds"]))))
    lo = _ints("border.min", given.get("border.min", str(spec["min"])))[0]
    hi = _ints("border.max", given.get("border.max", str(spec["max"])))[0]
    if lo > hi:
        raise SweepError(f"border.min={lo} is above border.max={hi}; the sizes searched are border.min..border.max.")
    try:
        share = float(given.get("border.share", spec["share"]))
        threshold = float(given.get("border.threshold", spec["threshold"]))
    except ValueError:
        raise SweepError("border.share and border.threshold must be numbers.") from None
    if not 0 < share <= 1:
        raise SweepError(f"border.share={share} must lie in (0, 1]: the share of seeds a size must solve.")
    return Search(cells, lags, seeds, lo, hi, share, threshold, spec["metric"], spec["preset"], rest)


# -- jobs ------------------------------------------------------------------------------------
def compose_job(search: Search, cell: str, lag: int, hidden: int, seed: int, folder: Path) -> Any:
    """The config `train.py +sweep=<preset> model=<cell> task.lag=<lag> ...` would run."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    job = [f"model={cell}", f"task.lag={lag}", f"model.hidden={hidden}", f"seed={seed}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+sweep={search.preset}", "progress=false", *search.overrides, *job])
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    return cfg


def check(search: Search, folder: Path) -> None:
    """Every (cell, lag) at both ends of the sizes through train's own checks, before any job."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from src.config import ConfigError
    from src.run import validate

    for cell in search.cells:
        for lag in search.lags:
            for h in (search.min, search.max):
                try:
                    validate(compose_job(search, cell, lag, h, search.seeds[0], folder))
                except (HydraException, OmegaConfBaseException, ConfigError) as err:
                    reason = str(err).strip().splitlines()[0].rstrip(".")
                    raise SweepError(
                        f"the job model={cell} task.lag={lag} model.hidden={h} would fail: {reason}."
                    ) from None


def job_name(cell: str, lag: int, hidden: int, seed: int) -> str:
    return f"{cell}_lag{lag}_h{hidden}_s{seed}"


def read_done(job: Path) -> dict[str, Any] | None:
    try:
        metrics = json.loads((job / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "completed" else None


def run_job(search: Search, cell: str, lag: int, hidden: int, seed: int, folder: Path) -> dict[str, Any]:
    """metrics.json of the job: read when it completed before, else trained now (its output goes to
    <job>/border.log; an unfinished earlier attempt is moved aside to <job>.unfinished-<time>)."""
    job = folder / job_name(cell, lag, hidden, seed)
    done = read_done(job)
    if done is not None:
        return done
    if job.exists():  # an attempt that did not complete: kept beside, never deleted, and started again
        job.rename(job.with_name(f"{job.name}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}"))
    from src.run import train

    cfg = compose_job(search, cell, lag, hidden, seed, job)
    job.mkdir(parents=True)
    t0 = time.perf_counter()
    with open(job / "border.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        metrics, _ = train(cfg)
    ok = (metrics.get(search.metric) or 0) >= search.threshold
    print(
        f"  {job.name}: {search.metric} {metrics.get(search.metric, float('nan')):.3f} "
        f"({'solved' if ok else 'not solved'}, {metrics['steps']} steps, {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    return metrics


# -- the result ------------------------------------------------------------------------------
def _share(search: Search, runs: dict[int, list[dict[str, Any]]], h: int | None) -> str:
    if h is None:
        return "-"
    k = sum((m.get(search.metric) or 0) >= search.threshold for m in runs[h])
    return share(k, len(runs[h]))


def border_row(search: Search, cell: str, lag: int, folder: Path) -> list[str]:
    """Search one (cell, lag) and return its table row."""
    runs: dict[int, list[dict[str, Any]]] = {}

    def solves(h: int) -> bool:
        runs[h] = [run_job(search, cell, lag, h, s, folder) for s in search.seeds]
        k = sum((m.get(search.metric) or 0) >= search.threshold for m in runs[h])
        return k >= search.share * len(search.seeds)

    solving, failing = gallop_bisect(search.min, search.max, solves)
    at = runs[solving] if solving is not None else []
    steps = [m["target"]["step"] for m in at if (m.get("target") or {}).get("step") is not None]
    vocab = int(compose_job(search, cell, lag, search.min, search.seeds[0], folder).task.vocab)
    state = None if solving is None else solving * (2 if cell == "lstm" else 1)
    return [
        cell,
        str(lag),
        str(solving) if solving is not None else f"> {search.max}",
        _share(search, runs, solving),
        str(failing) if failing is not None else f"< {search.min} not searched",
        _share(search, runs, failing),
        f"{statistics.median(steps):.0f} ({len(steps)}/{len(at)})" if steps else "-",
        str(at[0]["params"]) if at else "-",
        f"{lag * math.log2(vocab):.1f}",
        str(state) if state is not None else "-",
        ", ".join(str(h) for h in runs),
    ]


HEADER = [
    "cell",
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


def run_border(overrides: Sequence[str], root: Path = Path("outputs/border")) -> tuple[int, Path]:
    """`sweep.py border [overrides]`: search, print the table, write border.md and border.csv.
    `border.dir=<folder>` picks (or resumes) the folder. Returns (exit code, folder)."""
    given = [o for o in overrides if o.startswith("border.dir=")]
    overrides = [o for o in overrides if not o.startswith("border.dir=")]
    search = parse(overrides)
    folder = Path(given[-1].split("=", 1)[1]) if given else root / time.strftime("%Y-%m-%d_%H-%M-%S")
    check(search, folder)
    folder.mkdir(parents=True, exist_ok=True)
    from src.run import quiet_framework

    quiet_framework()
    print(
        f"border search in {folder}: cells {search.cells}, lags {search.lags}, hidden {search.min}..{search.max}, "
        f"seeds {search.seeds}, solved: {search.metric} >= {search.threshold} on >= {search.share:.0%} of seeds",
        flush=True,
    )
    t0 = time.perf_counter()
    rows, code = [], 0
    try:
        for cell in search.cells:
            for lag in search.lags:
                print(f"{cell}, lag {lag}:", flush=True)
                rows.append(border_row(search, cell, lag, folder))
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command with border.dir={folder} to go on", file=sys.stderr)
        code = 130
    wall = time.perf_counter() - t0
    write_table(search, folder, rows, wall, overrides)
    return code, folder


def write_table(search: Search, folder: Path, rows: list[list[str]], wall: float, overrides: Sequence[str]) -> None:
    note = (
        f"Smallest `model.hidden` in {search.min}..{search.max} at which at least {search.share:.0%} of seeds "
        f"{search.seeds} reach `{search.metric} >= {search.threshold}` (training settings of the "
        f"`{search.preset}` preset); bits demanded = lag x log2(vocab); state units = hidden (2 x hidden "
        f"for lstm's (h, c)). {wall:.0f} s."
    )
    command = " ".join(["python sweep.py border", *overrides])
    _write(folder / "border.md", f"# Capacity border\n\n`{command}`\n\n{note}\n\n{_md_table(HEADER, rows)}\n")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows([HEADER, *rows])
    _write(folder / "border.csv", buf.getvalue())
    print(f"\n{note}\n\n{_text_table(HEADER, rows)}\n\nWrote {folder / 'border.md'} and {folder / 'border.csv'}")
