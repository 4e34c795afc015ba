"""The README's published-benchmark tables, from the committed summaries of three sweeps.

    python sweep.py copy      hydra.sweep.dir=outputs/multirun/published_copy      logger=none
    python sweep.py adding    hydra.sweep.dir=outputs/multirun/published_adding    logger=none
    python sweep.py attention hydra.sweep.dir=outputs/multirun/published_attention logger=none
    cp outputs/multirun/published_<name>/summary/{jobs.csv,summary.md} docs/published/<name>/
    python docs/published/tables.py [out.md] # writes docs/published/tables.md (or out.md), prints it

A seed "beats" the memoryless baseline when its test score is better than the baseline by more
than 3 standard errors of a memoryless model's score on the same test set (n = data.test_size):
- copy: recall accuracy > 1/8 + 3 sqrt((1/8)(7/8) / (10 n)) (10 recall steps per sequence) and
  test loss < 10 ln 8 / (T + 20);
- adding: test MSE < 1/6 - 3 sqrt(Var[(s - 1)^2] / n), s the sum of two U(0, 1) values, where
  Var[(s - 1)^2] = E[(s - 1)^4] - (1/6)^2 = 1/15 - 1/36.
The adding table also gives the memoryless MSE on the jobs' own test set (mean (s - 1)^2 over the
n sums, regenerated from data.test_seed): what a network that learned nothing scores there.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PRESETS = ROOT / "conf" / "sweep"
sys.path.insert(0, str(ROOT))  # src/, for the adding task's test set


def preset(name: str) -> dict:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())


def jobs(name: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader((HERE / name / "jobs.csv").open()))
    bad = [r["job"] for r in rows if r["status"] != "completed"]
    if bad:
        sys.exit(f"error: {name}: jobs {', '.join(bad)} did not complete; rerun them before reading the table.")
    return rows


def by(rows: list[dict[str, str]], key: str) -> dict[str, list[dict[str, str]]]:
    """Rows grouped by `key` (in sweep order), each group sorted by seed."""
    out: dict[str, list[dict[str, str]]] = {}
    for r in sorted(rows, key=lambda r: int(r["num"])):
        out.setdefault(r[key], []).append(r)
    return {k: sorted(v, key=lambda r: int(r["seed"])) for k, v in out.items()}


def seeds(values: list[str]) -> str:
    return " / ".join(values)


def pm(values: list[float], digits: int = 3) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def vs_baseline(
    name: str,
    key: str,
    metric: str,
    beats: Callable[[dict[str, str]], bool],
    extra: Callable[[str, list[dict[str, str]]], str],
) -> list[str]:
    """One row per value of `key`: the baseline, each seed's test `metric`, score / baseline (mean
    ± sample std over seeds), the cell `extra(value, jobs)`, whether each seed beats it, mean fit s."""
    lines = []
    for value, rs in by(jobs(name), key).items():
        score = [float(r[f"test/{metric}"]) for r in rs]
        base = float(rs[0][f"chance/{metric}"])
        cells = [value, rs[0]["steps"], f"{base:.4f}", seeds([f"{v:.4f}" for v in score])]
        cells.append(pm([v / base for v in score], 2))
        cells.append(extra(value, rs))
        cells.append(seeds(["yes" if beats(r) else "no" for r in rs]))
        cells.append(f"{statistics.fmean(float(r['fit_time_s']) for r in rs):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def copy_table() -> list[str]:
    n = preset("copy")["data"]["test_size"]
    bar = 1 / 8 + 3 * math.sqrt((1 / 8) * (7 / 8) / (10 * n))
    return [
        f"Beats: recall acc > {bar:.4f} (1/8 + 3 SE over {10 * n:,} recall steps) and test loss < baseline.",
        "",
        "| T | steps | baseline loss 10 ln 8 / (T + 20) | test loss (seeds 0 / 1 / 2) | loss / baseline | "
        "recall acc (chance 0.125) | beats baseline | fit s |",
        "|---|---|---|---|---|---|---|---|",
        *vs_baseline(
            "copy",
            "task.delay",
            "loss",
            lambda r: float(r["test/acc"]) > bar and float(r["test/loss"]) < float(r["chance/loss"]),
            lambda _, rs: seeds([f"{float(r['test/acc']):.3f}" for r in rs]),
        ),
    ]


def memoryless_mse(length: str) -> str:
    """Mean (s - 1)^2 over the adding jobs' test set: always answering 1 (the baseline's answer)."""
    from src.datamodules.generate import make_split
    from src.datamodules.tasks import make_task

    seed = yaml.safe_load((ROOT / "conf" / "train.yaml").read_text())["data"]["test_seed"]
    _, y, _ = make_split(
        make_task({"family": "adding", "length": int(length)}), seed, preset("adding")["data"]["test_size"]
    )
    return f"{((y - 1) ** 2).mean().item():.4f}"


def adding_table() -> list[str]:
    n = preset("adding")["data"]["test_size"]
    bar = 1 / 6 - 3 * math.sqrt((1 / 15 - 1 / 36) / n)
    return [
        f"Beats: test MSE < {bar:.4f} (1/6 - 3 SE over {n:,} test sequences).",
        "",
        "| T | steps | baseline MSE | test MSE (seeds 0 / 1 / 2) | MSE / baseline | memoryless MSE on this test set "
        "| beats baseline | fit s |",
        "|---|---|---|---|---|---|---|---|",
        *vs_baseline(
            "adding", "task.length", "mse", lambda r: float(r["test/mse"]) < bar, lambda t, _: memoryless_mse(t)
        ),
    ]


def attention_table() -> list[str]:
    cap = preset("attention")["trainer"]["max_steps"]
    lines = [
        f"Steps to target: val/exact 100% at two validations in a row (every 50 steps); `> {cap}`: not by the cap.",
        "",
        "| model | steps to target (seeds 0 / 1 / 2) | median | test exact | fit s |",
        "|---|---|---|---|---|",
    ]
    for model, rs in by(jobs("attention"), "model").items():
        steps = [int(r["target.step"]) if r["target.reached"] == "true" else None for r in rs]
        shown = [str(s) if s is not None else f"> {cap}" for s in steps]
        median = statistics.median(s if s is not None else math.inf for s in steps)
        exact = [f"{float(r['test/exact']):.4f}" for r in rs]
        lines.append(
            f"| `{model}` | {seeds(shown)} | {median if median != math.inf else f'> {cap}'} | {seeds(exact)} "
            f"| {statistics.fmean(float(r['fit_time_s']) for r in rs):.0f} |"
        )
    return lines


def main() -> None:
    parts = [
        "# Published memory benchmarks (written by docs/published/tables.py)",
        "",
        "## Copy memory: LSTM(128), RMSProp 1e-3, batch 20",
        "",
        *copy_table(),
        "",
        "## Adding: LSTM(128), RMSProp 1e-3, batch 20",
        "",
        *adding_table(),
        "",
        "## partial_echo: attention vs encdec, LSTM(64)",
        "",
        *attention_table(),
        "",
    ]
    text = "\n".join(parts)
    (Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "tables.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
