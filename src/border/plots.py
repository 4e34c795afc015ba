"""The plots of a border search: the border against the lag (and its state units against the bits
demanded), and what the smallest solving networks hold (the memory probe)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.border.search import Point
from src.border.spec import Search
from src.border.tables import state_units


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
