"""The summary's heatmap: one panel per value of the facet keys, each cell a configuration's mean
metric over seeds with its spread and solved share."""

from __future__ import annotations

import math
from pathlib import Path

from src.sweeps.judge import rule
from src.sweeps.records import HIDDEN_KEY, LAG_KEY, SEED_KEY, STATUSES, Sweep, SweepError, number
from src.sweeps.tables import group_table


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
    numeric = [k for k in free if all(number(v) is not None for v in sweep.values[k])]
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
