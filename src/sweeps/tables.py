"""The tables of a summary, built with pandas: one row per job (jobs.csv), the jobs grouped by
configuration (mean, sample std and solved share over seeds), and the capacity table (smallest
hidden size that solves each lag); written as markdown or aligned text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from src.sweeps.judge import lower_is_better, share, solved
from src.sweeps.records import CELL_KEY, HIDDEN_KEY, LAG_KEY, SEED_KEY, STATUSES, Sweep, number


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


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
        row |= {c: number(j.metrics.get(c)) if done else None for c in cols}
        row["target.step"] = number(j.metrics.get("target.step"))
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


def plus_minus(row: Any, col: str, digits: int = 3) -> str:
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


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(lines)


def by_configuration(
    sweep: Sweep, keys: Sequence[str], metric: str, threshold: float
) -> tuple[list[str], list[list[str]]]:
    """The table by configuration (one row per value of `keys`): seeds (and jobs that did not
    complete), solved share, the metric's mean ± std beside its chance level, steps, steps to
    target and fit time."""
    groups = group_table(sweep, keys, metric, threshold)
    chance_key = f"chance/{metric.split('/')[-1]}"  # a metric without its baseline misleads
    header = [*keys, "seeds", "solved [95% CI]", metric, "chance", "steps", "steps to target", "fit s"]
    rows = []
    for key, g in groups.iterrows():
        seeds = f"{g['n']:.0f}" + "".join(f" (+{g[status]:.0f} {status})" for status in STATUSES[1:] if g[status])
        reached = f"{g['reached:median']:.0f} ({g['reached']:.0f}/{g['jobs']:.0f})" if g["reached"] else "-"
        rows.append(
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
    return header, rows
