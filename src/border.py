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
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.sweeps import PRESET_DIR, ROOT, SweepError, _md_table, _text_table, _write, share, weights_judged

PRESET = PRESET_DIR / "border.yaml"
SEARCH_KEYS = (
    "model",
    "task.vocab",
    "task.lag",
    "seed",
    "border.min",
    "border.max",
    "border.share",
    "border.threshold",
)


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
    vocabs: list[int] | None  # None: the task's own vocab (resolved by run_border)
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
    if key == "task.vocab" and min(out) < 2:
        raise SweepError(
            f"task.vocab={value} must be whole numbers of at least 2: a stream needs 2 symbols, and the bits "
            "demanded are lag x log2(vocab)."
        )
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
    vocab_text = given.get("task.vocab", ",".join(map(str, spec.get("vocabs") or [])))
    vocabs = _ints("task.vocab", vocab_text) if "task.vocab" in given or vocab_text else None
    lags = _ints("task.lag", given.get("task.lag", ",".join(map(str, spec["lags"]))))
    seeds = _ints("seed", given.get("seed", ",".join(map(str, spec["seeds"]))))
    lo = _ints("border.min", given.get("border.min", str(spec["min"])))[0]
    hi = _ints("border.max", given.get("border.max", str(spec["max"])))[0]
    if lo > hi:
        raise SweepError(f"border.min={lo} is above border.max={hi}; the sizes searched are border.min..border.max.")
    try:
        need = float(given.get("border.share", spec["share"]))
        threshold = float(given.get("border.threshold", spec["threshold"]))
    except ValueError:
        raise SweepError("border.share and border.threshold must be numbers.") from None
    if not 0 < need <= 1:
        raise SweepError(f"border.share={need} must lie in (0, 1]: the share of seeds a size must solve.")
    return Search(cells, vocabs, lags, seeds, lo, hi, need, threshold, spec["metric"], spec["preset"], rest)


# -- jobs ------------------------------------------------------------------------------------
def compose_job(search: Search, cell: str, vocab: int | None, lag: int, hidden: int, seed: int, folder: Path) -> Any:
    """The config `train.py +sweep=<preset> model=<cell> task.vocab=<vocab> task.lag=<lag> ...` would
    run (vocab None: the task's own)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    job = [f"model={cell}", *([f"task.vocab={vocab}"] if vocab is not None else [])]
    job += [f"task.lag={lag}", f"model.hidden={hidden}", f"seed={seed}"]
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
                        validate(cfg)
                    except (HydraException, OmegaConfBaseException, ConfigError) as err:
                        reason = str(err).strip().splitlines()[0].rstrip(".")
                        given = f" task.vocab={vocab}" if vocab is not None else ""
                        raise SweepError(
                            f"the job model={cell}{given} task.lag={lag} model.hidden={h} would fail: {reason}."
                        ) from None
    if search.vocabs is None:
        search.vocabs = [int(cfg.task.vocab)]


def job_name(cell: str, vocab: int, lag: int, hidden: int, seed: int) -> str:
    return f"{cell}_v{vocab}_lag{lag}_h{hidden}_s{seed}"


def read_done(job: Path) -> dict[str, Any] | None:
    try:
        metrics = json.loads((job / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "completed" else None


def run_job(search: Search, cell: str, vocab: int, lag: int, hidden: int, seed: int, folder: Path) -> dict[str, Any]:
    """metrics.json of the job: read when it completed before, else trained now (its output goes to
    <job>/border.log; an unfinished earlier attempt is moved aside to <job>.unfinished-<time>)."""
    job = folder / job_name(cell, vocab, lag, hidden, seed)
    done = read_done(job)
    if done is not None:
        return done
    if job.exists():  # an attempt that did not complete: kept beside, never deleted, and started again
        job.rename(job.with_name(f"{job.name}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}"))
    from src.run import train

    cfg = compose_job(search, cell, vocab, lag, hidden, seed, job)
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


# -- the search of one point -----------------------------------------------------------------
@dataclass
class Point:
    """The search of one (cell, vocab, lag): every job it ran, and what the bisection concluded."""

    cell: str
    vocab: int
    lag: int
    jobs: list[dict[str, Any]] = field(default_factory=list)  # one record per job, in the order run
    solving: int | None = None
    failing: int | None = None


def search_point(search: Search, cell: str, vocab: int, lag: int, folder: Path) -> Point:
    point = Point(cell, vocab, lag)

    def solves(h: int) -> bool:
        runs = [run_job(search, cell, vocab, lag, h, s, folder) for s in search.seeds]
        point.jobs += [
            {
                "hidden": h,
                "seed": s,
                "ok": (m.get(search.metric) or 0) >= search.threshold,
                "step": (m.get("target") or {}).get("step"),
                "params": m.get("params"),
                "weights": (m.get("weights") or {}).get("test") or m.get("tested_checkpoint"),
            }
            for s, m in zip(search.seeds, runs, strict=True)
        ]
        return sum(j["ok"] for j in point.jobs if j["hidden"] == h) >= search.share * len(search.seeds)

    point.solving, point.failing = gallop_bisect(search.min, search.max, solves)
    return point


# -- the result ------------------------------------------------------------------------------
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
    """Numbers the recurrent state holds: hidden, or 2 x hidden for the LSTM's (h, c)."""
    return hidden * (2 if cell == "lstm" else 1)


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
                "lag": str(p.lag),
                "smallest solving hidden": str(p.solving) if p.solving is not None else f"> {search.max}",
                "solved there [95% CI]": share(int(win["ok"]), int(win["n"])) if win is not None else "-",
                "largest failing hidden": str(p.failing) if p.failing is not None else f"< {search.min} not searched",
                "solved there [95% CI] ": share(int(lose["ok"]), int(lose["n"])) if lose is not None else "-",
                "median steps to target": f"{win['step']:.0f} ({win['reached']:.0f}/{win['n']:.0f})"
                if win is not None and win["reached"]
                else "-",
                "params": str(int(win["params"])) if win is not None else "-",
                "bits demanded": f"{p.lag * math.log2(p.vocab):.1f}",
                "state units": str(state_units(p.cell, p.solving)) if p.solving is not None else "-",
                "sizes run (in order)": ", ".join(dict.fromkeys(str(j["hidden"]) for j in p.jobs)),
            }
        )
    # the two "solved there" columns differ by a trailing space here (pandas columns are unique);
    # border.csv and the tables print HEADER
    return pd.DataFrame(rows, columns=[*HEADER[:6], HEADER[6] + " ", *HEADER[7:]])


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
        bits = [p.lag * math.log2(p.vocab) for p in solved]
        right.plot(bits, [state_units(cell, p.solving) for p in solved], "o-", color=color, label=label)
    top = max([search.max, *(state_units(p.cell, p.solving) for p in points if p.solving is not None)])
    right.plot([1, top], [1, top], ":", color="grey", label="1 state unit per bit")
    for ax in (left, right):
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
    left.set_xticks(search.lags)
    left.set_xlabel("lag")
    left.set_ylabel("smallest solving model.hidden")
    left.set_title("o: smallest solving, x: largest failing, ^: none up to border.max", fontsize=9)
    left.legend(fontsize=8)
    right.set_xscale("log", base=2)
    right.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    right.set_xlabel("bits demanded = lag x log2(vocab)")
    right.set_ylabel("state units at the border")
    right.legend(fontsize=8)
    fig.suptitle(
        f"capacity border: {search.metric} >= {search.threshold} on >= {search.share:.0%} of seeds {search.seeds}",
        fontsize=10,
    )
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def run_border(overrides: Sequence[str], root: Path = Path("outputs/border")) -> tuple[int, Path]:
    """`sweep.py border [overrides]`: search, print the table, write border.md, border.csv,
    border.png and a TensorBoard event file (the plot and the table) into the folder.
    `border.dir=<folder>` picks (or resumes) the folder. Returns (exit code, folder)."""
    given = [o for o in overrides if o.startswith("border.dir=")]
    overrides = [o for o in overrides if not o.startswith("border.dir=")]
    search = parse(overrides)
    folder = Path(given[-1].split("=", 1)[1]) if given else root / time.strftime("%Y-%m-%d_%H-%M-%S")
    check(search, folder)
    assert search.vocabs is not None
    folder.mkdir(parents=True, exist_ok=True)
    from src.run import quiet_framework

    quiet_framework()
    print(
        f"border search in {folder}: cells {search.cells}, vocabs {search.vocabs}, lags {search.lags}, hidden "
        f"{search.min}..{search.max}, seeds {search.seeds}, solved: {search.metric} >= {search.threshold} on "
        f">= {search.share:.0%} of seeds",
        flush=True,
    )
    t0 = time.perf_counter()
    points, code = [], 0
    try:
        for cell in search.cells:
            for vocab in search.vocabs:
                for lag in search.lags:
                    print(f"{cell}, vocab {vocab}, lag {lag}:", flush=True)
                    points.append(search_point(search, cell, vocab, lag, folder))
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command with border.dir={folder} to go on", file=sys.stderr)
        code = 130
    write_result(search, folder, points, time.perf_counter() - t0, overrides)
    return code, folder


def write_result(search: Search, folder: Path, points: list[Point], wall: float, overrides: Sequence[str]) -> None:
    from src.sweeps import write_tensorboard

    note = (
        f"Smallest `model.hidden` in {search.min}..{search.max} at which at least {search.share:.0%} of seeds "
        f"{search.seeds} reach `{search.metric} >= {search.threshold}` (training settings of the "
        f"`{search.preset}` preset; {search.metric} measured on "
        f"{weights_judged(j['weights'] for p in points for j in p.jobs)}); solved there: solved seeds/seeds [95% Wilson "
        f"interval]; bits demanded = lag x log2(vocab); state units = hidden (2 x hidden for lstm's (h, c)). "
        f"{wall:.0f} s."
    )
    table = result(search, points)
    rows = table.values.tolist()
    command = " ".join(["python sweep.py border", *overrides])
    markdown = f"# Capacity border\n\n`{command}`\n\n{note}\n\n{_md_table(HEADER, rows)}\n"
    _write(folder / "border.md", markdown)
    _write(folder / "border.csv", table.to_csv(index=False, header=HEADER, lineterminator="\n"))
    written = [folder / "border.md", folder / "border.csv"]
    if points:
        written.append(plot(search, points, folder / "border.png"))
    written.append(write_tensorboard(folder, written[2:], markdown, time.time()))
    print(f"\n{note}\n\n{_text_table(HEADER, rows)}\n\nWrote " + ", ".join(str(p) for p in written))
    print(f"  TensorBoard: tensorboard --logdir {folder}  (Images: the plot, Text: the table)")
