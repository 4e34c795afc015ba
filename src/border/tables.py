"""The result of a border search as tables (pandas): one row per (cell, vocab, lag) with the
smallest solving and largest failing sizes and their solved shares, and one row per job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from src.border.search import Point
from src.border.spec import Search
from src.sweeps.judge import share


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
