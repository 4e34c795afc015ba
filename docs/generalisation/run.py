"""Generalisation: networks trained at one lag (or delay) evaluated at other lags, windows and delays.

    python docs/generalisation/run.py            # trains what is missing, evaluates, writes the table
    python docs/generalisation/run.py --seeds 0 --runs /tmp/gen --out /tmp/gen_table   # one seed elsewhere

Per seed it trains two runs with train.py (a subprocess, as a user would; a run folder that holds
metrics.json is reused, never retrained):
- `echo`: LSTM(50) on echo_lag, a window of 9, the value 2 steps back, trained to its target
  (val/exact 100% twice in a row);
- `copy`: LSTM(128) on copy_memory, T = 10, batch 128, a fixed budget of 2,000 steps.
Then it evaluates each run with eval.py (its `main`, called in this process: one import of torch and
Lightning for all evaluations instead of one per evaluation) on the run's own test seed and size:
echo at lags 0..8 in the window of 9, at lag 2 in windows of 5, 16 and 32, and in windows of 16 and
32 at the trained position (the 7th value from the window's start: lags 9 and 25); copy at T = 5, 10,
20, 40, 80. Each evaluation lands in `<run>.eval/<setting>/` (metrics.json, eval.log); one that
exists is read, not redone. The table (generalisation.md, generalisation.csv under --out) gives per
setting the metric of each seed, their mean ± sample standard deviation, and chance: test exact
match for echo (one target: exact = accuracy; chance 1/vocab = 0.01), recall accuracy for copy
(chance 1/8) with the test loss beside its memoryless baseline 10 ln 8 / (T + 20).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # eval.py and src/

COMMON = ["hardware.threads=1", "logger=none", "progress=false", "samples=0", "diagnostics=false"]
# name: (train.py overrides, the trained setting, the metric read, the evaluated settings)
STUDIES: dict[str, dict[str, Any]] = {
    "echo": {
        "train": ["task=echo_lag", "task.context=9", "task.lag=2", "model.hidden=50"],
        "trained": {"task.context": 9, "task.lag": 2},
        "metric": "exact",
        # the other windows: lag 2 (2 steps before the newest value) and position 6 (the 7th value from
        # the window's start, where lag 2 lies in the window of 9): a delay line vs recall by position
        "evals": [{"task.lag": lag} for lag in range(9)]
        + [{"task.context": c} for c in (5, 16, 32)]
        + [{"task.context": c, "task.lag": c - 1 - 6} for c in (16, 32)],
    },
    "copy": {
        "train": [
            "task=copy_memory",
            "task.delay=10",
            "model.hidden=128",
            "data.batch_size=128",
            "trainer.max_steps=2000",
            "trainer.val_check_interval=250",
            "data.val_size=500",
            "data.test_size=1000",
        ],  # fmt: skip
        "trained": {"task.delay": 10},
        "metric": "acc",
        "evals": [{"task.delay": t} for t in (5, 10, 20, 40, 80)],
    },
}


def train(name: str, seed: int, runs: Path) -> Path:
    """The run folder of study `name` at `seed`, trained with train.py unless it holds metrics.json."""
    folder = runs / f"{name}_s{seed}"
    if (folder / "metrics.json").exists():
        return folder
    if folder.exists():
        sys.exit(f"error: {folder} holds an unfinished run (no metrics.json); remove it and rerun.")
    print(f"training {folder.name} ...", flush=True)
    args = [*STUDIES[name]["train"], *COMMON, f"seed={seed}", f"hydra.run.dir={folder}"]
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: training {folder} failed:\n{done.stderr[-2000:]}")
    return folder


def evaluate(run: Path, setting: dict[str, Any]) -> dict[str, Any]:
    """eval.py's metrics.json for `run` under `setting` ({override key: value}), computed once."""
    import eval as eval_py

    out = run.parent / f"{run.name}.eval" / "_".join(f"{k.removeprefix('task.')}={v}" for k, v in setting.items())
    if not (out / "metrics.json").exists():
        with contextlib.redirect_stdout(io.StringIO()):  # its summary is kept in eval.log
            code = eval_py.main([str(run), *(f"{k}={v}" for k, v in setting.items()), "--out", str(out)])
        if code != 0:
            sys.exit(f"error: eval.py {run} {setting} exited {code}.")
    return json.loads((out / "metrics.json").read_text())


def rows(name: str, runs: dict[int, Path], study: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per evaluated setting of study `name` (STUDIES[name] unless given): each seed's
    metric, their mean, sample standard deviation and chance."""
    study = study or STUDIES[name]
    metric = study["metric"]
    out = []
    for setting in study["evals"]:
        full = {**study["trained"], **setting}
        records = {seed: evaluate(run, setting) for seed, run in runs.items()}
        values = [records[s][f"test/{metric}"] for s in sorted(records)]
        first = records[min(records)]
        row = {
            "study": name,
            "setting": ", ".join(f"{k.removeprefix('task.')} {v}" for k, v in full.items()),
            "as_trained": full == study["trained"],
            "metric": f"test/{metric}",
            "seeds": " / ".join(str(s) for s in sorted(records)),
            "values": " / ".join(f"{v:.3f}" for v in values),
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "chance": first["chance"][metric],
        }
        if "task.context" in full:  # where the target lies, counted from the window's oldest value (0)
            row["position"] = full["task.context"] - 1 - full["task.lag"]
        if name == "copy":  # the loss against its memoryless baseline 10 ln 8 / (T + 20)
            row["loss"] = statistics.fmean(r["test/loss"] for r in records.values())
            row["baseline_loss"] = first["chance"]["loss"]
        out.append(row)
    return out


def markdown(table: list[dict[str, Any]], seeds: list[int]) -> str:
    s = " / ".join(map(str, seeds))
    # study: (title, the columns after "evaluated at", the cells of those columns a row gives)
    sections = {
        "echo": (
            "echo_lag: LSTM(50) trained at lag 2 in a window of 9, evaluated at other lags and windows",
            ["position from the window's start", f"test exact (seeds {s})", "mean ± sd", "chance"],
            lambda r: [str(r["position"]), r["values"], f"{r['mean']:.3f} ± {r['sd']:.3f}", f"{r['chance']:.3f}"],
        ),
        "copy": (
            "copy_memory: LSTM(128) trained at T = 10 (2,000 steps), evaluated at other delays",
            [f"recall acc (seeds {s})", "mean ± sd", "chance", "test loss (mean)", "baseline loss"],
            lambda r: [
                r["values"],
                f"{r['mean']:.3f} ± {r['sd']:.3f}",
                f"{r['chance']:.3f}",
                f"{r['loss']:.4f}",
                f"{r['baseline_loss']:.4f}",
            ],  # fmt: skip
        ),
    }
    lines = ["# Generalisation (written by docs/generalisation/run.py)"]
    for study, (title, columns, cells) in sections.items():
        lines += [
            "",
            f"## {title}",
            "",
            "| evaluated at | " + " | ".join(columns) + " |",
            "|---" * (1 + len(columns)) + "|",
        ]
        for r in (r for r in table if r["study"] == study):
            setting = r["setting"].replace("delay", "T") + (" (as trained)" if r["as_trained"] else "")
            lines.append("| " + " | ".join([setting, *cells(r)]) + " |")
    return "\n".join(lines) + "\n"


def write(table: list[dict[str, Any]], seeds: list[int], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in table for k in r))
    with (out / "generalisation.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)
    text = markdown(table, seeds)
    (out / "generalisation.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--runs", type=Path, default=ROOT / "outputs" / "generalisation", help="run folders")
    p.add_argument("--out", type=Path, default=HERE, help="where generalisation.md and .csv go")
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    table = []
    for name in STUDIES:
        runs = {seed: train(name, seed, a.runs.resolve()) for seed in seeds}
        table += rows(name, runs)
    print(write(table, seeds, a.out), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
