"""`sweep.py summarize`: a multirun folder into jobs.csv, summary.md, heatmap PNGs and a TensorBoard
run, and the same tables on the terminal; `ending`, the tables a `train.py -m` ends with.

Everything written is a pure function of the folder's files: summarizing twice gives the same
files. The files are written into a temporary folder beside the summary's and moved into place
together, so a summary stopped half-way (Ctrl-C, SIGTERM, a full disk) leaves the folder as it was.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from src.sweeps.judge import judged, rule, summary_for
from src.sweeps.plots import choose_axes, heatmap
from src.sweeps.records import HIDDEN_KEY, SEED_KEY, STATUSES, SUMMARY, Sweep, SweepError, load_sweep, number
from src.sweeps.tables import by_configuration, capacity_table, job_rows, md_table, text_table
from src.sweeps.tensorboard import write_tensorboard


@dataclass
class Plan:
    """How one summary judges its sweep and what it shows."""

    metric: str
    threshold: float
    x: str | None
    y: str | None
    free: list[str]  # the swept keys, seeds aside: the table's rows
    note: str  # why there is no heatmap ("" when there is one)


def plan(
    sweep: Sweep, metric: str | None = None, threshold: float | None = None, x: str | None = None, y: str | None = None
) -> Plan:
    """The flags given (None: not given) on top of the sweep's own `summary.*`, checked against
    the sweep before anything is written: a bad flag, axis or metric is one sentence (SweepError)."""
    own = summary_for(sweep.summary, metric=metric, threshold=threshold, x=x, y=y)
    free = [k for k in sweep.swept if k != SEED_KEY]  # the sweep's own axes where this run swept them
    x = x if x is not None else (own.x if own.x in free else None)
    y = y if y is not None else (own.y if own.y in free else None)
    choose_axes(sweep, x, y)  # a bad --x/--y fails here, before anything is written
    known = sorted({k for j in sweep.jobs for k in j.metrics if "/" in k})
    if known and own.metric not in known:
        raise SweepError(
            f"--metric={own.metric!r} is not a metric of this sweep's jobs; choose one of: {', '.join(known)}."
        )
    note = f"{sweep.folder} has no finished job yet" if not any(j.status != "missing" for j in sweep.jobs) else ""
    if not note and sweep.expected is None and not (x and y):
        note = "no heatmap: the sweeper chose its jobs as it went (not a grid); pass --x and --y to draw one"
    return Plan(own.metric, own.threshold, x, y, free, note)


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
    summary_for({}, metric=metric, threshold=threshold, x=x, y=y)  # a bad flag: refused before any reading
    where = Path(out) if out is not None else Path(folder) / SUMMARY
    try:
        sweep = load_sweep(folder)
        how = plan(sweep, metric, threshold, x, y)
        written = write_summary(sweep, how, where)
    except OSError as err:  # a read-only sweep folder, a full disk: said once, not as a traceback
        raise SweepError(
            f"cannot write the summary to {where} ({err.strerror or type(err).__name__}); pass --out <a writable folder>."
        ) from None
    if not quiet:
        print("\n".join(report(sweep, how)))
        print("\nWrote:")
        for what, path in written.items():
            print(f"  {what:<12}{path}")
        inside = where.absolute().is_relative_to(sweep.folder.absolute())
        logdir = f"--logdir {sweep.folder}" if inside else f"--logdir_spec jobs:{sweep.folder},summary:{where / 'tb'}"
        print(f"  TensorBoard: tensorboard {logdir}  (HParams: every job; Images and Text: this summary)")
    return written


def write_summary(sweep: Sweep, how: Plan, out: Path) -> dict[str, Path]:
    """The summary's files, written into a temporary folder beside `out` and moved into it at once."""
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)  # inside the try: a signal right after it still removes it
        fields, rows = job_rows(sweep, how.metric, how.threshold)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        (tmp / "jobs.csv").write_text(buf.getvalue())
        written = {"csv": "jobs.csv"}
        images = []
        if not how.note:
            name = f"heatmap_{re.sub(r'[^A-Za-z0-9.]+', '-', how.metric).strip('-')}.png"
            images.append(heatmap(sweep, how.metric, how.threshold, tmp / name, how.x, how.y))
            written["heatmap"] = name
        markdown = summary_markdown(sweep, how, [p.name for p in images])
        (tmp / "summary.md").write_text(markdown)
        written["markdown"] = "summary.md"
        tb = write_tensorboard(tmp / "tb", images, markdown, sweep.start)
        written["tensorboard"] = str(tb.relative_to(tmp))
        publish(tmp, out)
    finally:
        with held_signals():  # a second signal must not cut the clean-up short
            shutil.rmtree(tmp, ignore_errors=True)
    return {what: out / rel for what, rel in written.items()}


def publish(tmp: Path, out: Path) -> None:
    """Move every file of `tmp` into `out` (the folder itself when `out` does not exist yet), with
    SIGINT and SIGTERM held back until all are in place; other files in `out` are kept."""
    with held_signals():
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, out)
            return
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dest = out / path.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)


@contextmanager
def held_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait (delivered on leaving) while the summary's files move or go."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _jobs_line(sweep: Sweep) -> tuple[str, str]:
    """(how many jobs the sweep asked for, how many ended how)."""
    counts = ", ".join(f"{sweep.count(s)} {s}" for s in STATUSES)
    if sweep.expected is not None:
        return f"{sweep.expected} expected", counts
    return (f"{sweep.trials} trials asked" if sweep.trials else "number not fixed in advance"), counts


def summary_markdown(sweep: Sweep, how: Plan, images: list[str]) -> str:
    """summary.md: what was swept and how it is judged, the capacity table, the table by
    configuration, the heatmap and the jobs that did not complete."""
    metric, threshold = how.metric, how.threshold
    expected, counts = _jobs_line(sweep)
    md = [f"# Sweep {sweep.folder.name}", "", f"- jobs: {expected}; {counts} ({sweep.sweeper}, {sweep.launcher})"]
    for k in sweep.keys:
        md.append(f"- {'swept' if k in sweep.swept else 'fixed'}: `{k}` = {', '.join(sweep.values[k])}")
    md.append(
        f"- solved: `{rule(metric, threshold)}` on the job's held-out {metric.split('/')[0]} set, measured on "
        f"{judged(sweep)}; a verdict is solved seeds/seeds [95% Wilson interval of the solve probability]"
    )
    ends = [p for p in (j.folder / "metrics.json" for j in sweep.jobs if j.folder is not None) if p.is_file()]
    if ends:
        span = max(p.stat().st_mtime for p in ends) - sweep.start
        fit = sum(number(j.metrics.get("fit_time_s")) or 0 for j in sweep.jobs)
        md.append(
            f"- time: {span:.0f} s from the sweep's start to its last metrics.json; {fit:.0f} s of fitting in all"
        )
    if how.note:
        md += ["", f"{how.note}."]
    capacity = capacity_table(sweep, metric, threshold)
    if capacity:
        md += ["", f"## Smallest `{HIDDEN_KEY}` that solves each lag", ""]
        md += [
            f"Smallest swept hidden size at which more than half of the seeds reach `{rule(metric, threshold)}` "
            "(solved seeds/seeds [95% Wilson interval of the solve probability]); `> n`: no swept size up to n "
            "does (the share at n beside it).",
            "",
            md_table(*capacity),
        ]
    table = md_table(*by_configuration(sweep, how.free, metric, threshold))
    md += ["", f"## Results by configuration ({metric}: mean ± sample std over seeds)", "", table]
    md += [
        "",
        "`steps`: optimizer steps trained (mean ± std); `steps to target`: median step at which the "
        "validation target was reached (jobs that reached it/jobs).",
    ]
    if images:
        md += ["", "## Heatmap", ""] + [f"![{metric}]({name})" for name in images]
    for status in STATUSES[1:]:
        jobs = [j for j in sweep.jobs if j.status == status]
        if jobs:
            md += ["", f"## {status.capitalize()} jobs ({len(jobs)})", ""] + [f"- `{j.name}`: {j.note}" for j in jobs]
    return "\n".join(md) + "\n"


def report(sweep: Sweep, how: Plan) -> list[str]:
    """The summary's tables as the terminal shows them (`sweep.py summarize`, the end of a multirun)."""
    judge = rule(how.metric, how.threshold)
    expected, counts = _jobs_line(sweep)
    lines = [f"\nSweep {sweep.folder}: {expected}; {counts}"]
    capacity = capacity_table(sweep, how.metric, how.threshold)
    if capacity:
        lines += [f"\nSmallest {HIDDEN_KEY} that solves each lag ({judge} in most seeds):", text_table(*capacity)]
    lines += [f"\nBy configuration ({judge} counts as solved):"]
    lines += [text_table(*by_configuration(sweep, how.free, how.metric, how.threshold))]
    lines += [f"{status}: {j.name}: {j.note}" for status in STATUSES[1:] for j in sweep.jobs if j.status == status]
    return lines


def ending(folder: Path) -> list[str]:
    """What a `train.py -m` prints when its last job has ended: the table `sweep.py summarize`
    prints, the command that writes the full summary (csv, heatmap, TensorBoard images) and the
    TensorBoard command for the folder. A sweep that cannot be judged yet gets the commands alone."""
    commands = [
        f"\nFull summary (jobs.csv, summary.md, heatmap): python sweep.py summarize {folder}",
        f"TensorBoard: tensorboard --logdir {folder}",
    ]
    try:
        sweep = load_sweep(folder)
        return [*report(sweep, plan(sweep)), *commands]
    except Exception as err:  # whatever the folder holds, the sweep's own outcome is what ends the run
        return [f"\nno table: {err}", *commands]
