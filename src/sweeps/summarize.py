"""`sweep.py summarize`: a multirun folder into jobs.csv, summary.md, heatmap PNGs and a TensorBoard
run, and the same tables on the terminal. Everything written is a pure function of the folder's
files: summarizing twice gives the same files.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from src.files import write_text
from src.sweeps.judge import judged, rule, share
from src.sweeps.plots import choose_axes, heatmap
from src.sweeps.records import HIDDEN_KEY, SEED_KEY, STATUSES, SUMMARY, SweepError, load_sweep, number
from src.sweeps.tables import capacity_table, group_table, job_rows, md_table, plus_minus, text_table
from src.sweeps.tensorboard import write_tensorboard


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
    write_text(out / "jobs.csv", buf.getvalue())
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
                plus_minus(g, metric),
                f"{g[f'{chance_key}:mean']:.3g}" if g[f"{chance_key}:n"] else "-",
                plus_minus(g, "steps", 0),
                reached,
                plus_minus(g, "fit_time_s", 1),
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
        fit = sum(number(j.metrics.get("fit_time_s")) or 0 for j in sweep.jobs)
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
            md_table(*capacity),
        ]
    md += ["", f"## Results by configuration ({metric}: mean ± sample std over seeds)", "", md_table(g_header, g_rows)]
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
    write_text(out / "summary.md", markdown)
    written["markdown"] = out / "summary.md"
    written["tensorboard"] = write_tensorboard(out / "tb", images, markdown, start)

    if not quiet:
        print(f"\nSweep {sweep.folder}: {expected}; {counts}")
        if capacity:
            print(f"\nSmallest {HIDDEN_KEY} that solves each lag ({rule(metric, threshold)} in most seeds):")
            print(text_table(*capacity))
        print(f"\nBy configuration ({rule(metric, threshold)} counts as solved):")
        print(text_table(g_header, g_rows))
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
