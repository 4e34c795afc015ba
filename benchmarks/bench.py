"""Speed benchmark: what a user waits for, and the codebase against a bare PyTorch loop.

    python benchmarks/bench.py                 # all sections, 5 repeats (a few minutes)
    python benchmarks/bench.py --repeats 3 --sections steps
    python benchmarks/bench.py --sections presets   # tutorial budgets (slow: minutes)

Sections
- solve:   `python train.py task=...` as a user runs it, per default task: process wall time, the
           part before the first training step, steps and seconds to reach the target, peak memory.
- steps:   training steps/s of the codebase (Lightning, the real train() path with validation time
           excluded) vs a bare PyTorch loop (same net, batch, optimizer, clipping, data generator;
           no Lightning), in this process, alternating, at tutorial batch sizes and the default.
- diagnostics: the end-of-run diagnostics (memory probe, timescales, gradient by distance) per
           default task: their seconds against the run's fit time, and the process wall time with
           `diagnostics=true` against `diagnostics=false`, runs alternating.
- presets: tutorial recipes run at their full budgets (one run each; they take minutes).
- help:    `python train.py --help` wall time.

Every number is the median of --repeats runs with [min-max]. Results go to
benchmarks/results/<date>_<time>.{md,json} so later runs can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Default task configurations a user types; each must reach its target.
SOLVE = {
    "echo_current": ["task=echo_current"],
    "echo_lag": ["task=echo_lag"],
    "echo_sequence": ["task=echo_sequence"],
    "partial_echo+encdec": ["task=partial_echo", "model=encdec"],
}
OPTIONAL_SOLVE = {  # tasks added by later issues, benchmarked when their config exists
    "arithmetic": ["task=arithmetic"],
    "lag_regression+onehot": ["task=lag_regression"],
    "invert_bits": ["task=invert_bits"],
    "echo_lag_online": ["task=echo_lag_online"],
}
PRESETS = {  # the echo tutorials' exact recipes at their full budgets (design.md S1, S3, S4, S5)
    "S1 s1_echo_current": ["experiment=s1_echo_current"],
    "S3 s3_echo_lag": ["experiment=s3_echo_lag"],
    "S4 s4_echo_sequence": ["experiment=s4_echo_sequence"],
    "S5 s5_partial_echo": ["experiment=s5_partial_echo"],
}
STEP_CASES = [  # (label, overrides): tutorial batch sizes and the default
    ("echo_lag LSTM(50) batch 5", ["task=echo_lag", "data.batch_size=5"]),
    ("echo_sequence LSTM(20) batch 7", ["task=echo_sequence", "model.hidden=20", "data.batch_size=7"]),
    ("echo_lag LSTM(50) batch 64 (default)", ["task=echo_lag"]),
    ("partial_echo encdec batch 128 (default)", ["task=partial_echo", "model=encdec"]),
    # the stateful path (state carried between batches, TBPTT chunks, manual optimization)
    ("echo_lag_online LSTM(50) batch 32 (default, stateful)", ["task=echo_lag_online"]),
    ("echo_lag lru batch 64 (default)", ["task=echo_lag", "model=lru"]),
]


def med(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(stat: dict[str, float] | None, unit: str = "", digits: int = 2) -> str:
    if stat is None:
        return "-"
    return f"{stat['median']:.{digits}f}{unit} [{stat['min']:.{digits}f}-{stat['max']:.{digits}f}]"


def run_train(overrides: list[str], cwd: Path) -> dict[str, Any]:
    """One `python train.py` process, timed from launch to exit; returns its metrics.json too."""
    t0_wall = time.time()
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "logger=none", *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"train.py {' '.join(overrides)} failed:\n{res.stderr[-2000:]}")
    folder = res.stdout.rsplit("Run folder: ", 1)[1].strip()
    metrics = json.loads((Path(folder) / "metrics.json").read_text())
    return {"wall": wall, "before_first_step": metrics["first_step_at"] - t0_wall, "metrics": metrics}


def section_solve(repeats: int, cwd: Path) -> list[dict[str, Any]]:
    cases = dict(SOLVE)
    cases.update(
        {k: v for k, v in OPTIONAL_SOLVE.items() if (ROOT / "conf/task" / f"{v[0].split('=')[1]}.yaml").exists()}
    )
    rows = []
    for name, overrides in cases.items():
        runs = [run_train(overrides, cwd) for _ in range(repeats)]
        m = [r["metrics"] for r in runs]
        monitor = m[0]["target"]["monitor"]
        rows.append(
            {
                "task": name,
                "wall_s": med([r["wall"] for r in runs]),
                "before_first_step_s": med([r["before_first_step"] for r in runs]),
                "target": f"{monitor} {m[0]['target']['target']}",
                "reached": f"{sum(x['target']['reached'] for x in m)}/{len(m)}",
                "steps_to_target": med([x["target"]["step"] or float("nan") for x in m]),
                "seconds_to_target": med([x["target"]["seconds"] or float("nan") for x in m]),
                "test_exact": med([x.get("test/exact", float("nan")) for x in m]),
                "peak_rss_mb": med([x["peak_rss_mb"] for x in m]),
            }
        )
        print(f"solve {name}: wall {fmt(rows[-1]['wall_s'], ' s')}", flush=True)
    return rows


def bare_loop(cfg: Any, steps: int) -> float:
    """Batches/s of a hand-written loop: same net, batch, Adam, clipping and generator; no
    Lightning. A stateful task carries the state between batches and steps every `model.tbptt`
    steps, skipping chunks with no target, as the codebase does (src/lit_models/sequence_module.py)."""
    import torch
    import torch.nn.functional as F

    from src.datamodules.sequence_datamodule import TrainStream
    from src.lit_models.sequence_module import detach
    from src.run import build_net, validate

    task, net_kwargs, _ = validate(cfg)
    # the thread count train() sets: otherwise the first case's bare loop ran at torch's default
    # (every core; on a busy machine many times slower) and the later ones at what train() left
    if cfg.hardware.threads:
        torch.set_num_threads(cfg.hardware.threads)
    torch.manual_seed(cfg.seed)
    net = build_net(task, net_kwargs)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.optim.optimizer.lr)
    stream = TrainStream(task, cfg.data.batch_size, 0, steps, cfg.seed, 0, "cpu")
    clip = cfg.optim.grad_clip
    stateful = bool(getattr(task, "stateful", False))
    tbptt = net_kwargs.get("tbptt", 1) if stateful and task.framing != "window" else None
    state = None
    batches = 0
    net.train()
    t0 = time.perf_counter()
    for x, y, mask, reset in stream:
        batches += 1
        if reset:
            state = None
        pieces = (
            zip(x.split(tbptt, 1), y.split(tbptt, 1), mask.split(tbptt, 1), strict=True) if tbptt else [(x, y, mask)]
        )
        for xs, ys, ms in pieces:
            out, state = net(xs, state) if stateful else net(xs)
            state = detach(state) if stateful else None
            if not ms.any():
                continue
            target = ys.masked_fill(~ms, -100).flatten()
            loss = F.cross_entropy(out.flatten(0, 1), target, ignore_index=-100, reduction="sum") / ms.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
    return batches / (time.perf_counter() - t0)


def codebase_loop(cfg: Any) -> float:
    """Steps/s of the real train() path (validation time excluded by StepTimer)."""
    from src.run import train

    metrics, _ = train(cfg)
    return metrics["train_batches_per_s"]


def section_steps(repeats: int, steps: int) -> list[dict[str, Any]]:
    import contextlib
    import io

    from omegaconf import open_dict

    from tests.conftest import make_cfg

    rows = []
    for label, overrides in STEP_CASES:
        bare, code = [], []
        for i in range(repeats):
            tmp = Path(tempfile.mkdtemp())
            cfg = make_cfg(
                tmp,
                *overrides,
                "callbacks.target_reached.target=null",  # run every step: this measures speed
                f"trainer.max_steps={steps}",
                f"data.batches_per_epoch={steps}",
                f"trainer.val_check_interval={steps}",
                "samples=0",
            )
            with open_dict(cfg):
                cfg.paths.output_dir = str(tmp / f"run{i}")
            bare.append(bare_loop(cfg, steps))
            with contextlib.redirect_stdout(io.StringIO()):
                code.append(codebase_loop(cfg))
        ratio = [c / b for c, b in zip(code, bare, strict=True)]
        rows.append(
            {"case": label, "bare_steps_per_s": med(bare), "codebase_steps_per_s": med(code), "ratio": med(ratio)}
        )
        print(f"steps {label}: ratio {fmt(rows[-1]['ratio'])}", flush=True)
    return rows


def section_presets(cwd: Path) -> list[dict[str, Any]]:
    rows = []
    for name, overrides in PRESETS.items():
        r = run_train(overrides, cwd)
        m = r["metrics"]
        rows.append(
            {
                "preset": name,
                "wall_s": r["wall"],
                "steps": m["steps"],
                "test_acc": m.get("test/acc"),
                "test_exact": m.get("test/exact"),
                "chance_exact": m["chance"].get("exact"),
            }
        )
        print(f"preset {name}: {r['wall']:.1f} s, test exact {m.get('test/exact')}", flush=True)
    return rows


def section_help(repeats: int) -> dict[str, float]:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return med(walls)


def section_diagnostics(repeats: int, cwd: Path) -> list[dict[str, Any]]:
    rows = []
    for name, overrides in SOLVE.items():
        on, off = [], []
        for _ in range(repeats):  # alternating, so drift of the machine hits both alike
            on.append(run_train([*overrides, "diagnostics=true"], cwd))
            off.append(run_train([*overrides, "diagnostics=false"], cwd))
        rows.append(
            {
                "task": name,
                "fit_s": med([r["metrics"]["fit_time_s"] for r in on]),
                "diagnostics_s": med([r["metrics"]["diagnostics_s"] for r in on]),
                "share_of_fit": med([r["metrics"]["diagnostics_s"] / r["metrics"]["fit_time_s"] for r in on]),
                "wall_on_s": med([r["wall"] for r in on]),
                "wall_off_s": med([r["wall"] for r in off]),
            }
        )
        print(
            f"diagnostics {name}: {fmt(rows[-1]['diagnostics_s'], ' s')} of fit {fmt(rows[-1]['fit_s'], ' s')}",
            flush=True,
        )
    return rows


def md_table(title: str, header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown section: `## title`, then one table row per entry of rows."""
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def to_markdown(result: dict[str, Any]) -> str:
    out = [
        f"# Benchmark {result['date']}",
        "",
        f"{result['machine']}; repeats {result['repeats']}; median [min-max]",
        "",
    ]
    if "solve" in result:
        out += md_table(
            "Time to solve (`python train.py <task>`, whole process)",
            ["task", "process wall", "before first step", "target", "reached", "steps to target",
             "s to target (fit)", "test exact", "peak RSS MB"],
            [[r["task"], fmt(r["wall_s"], " s"), fmt(r["before_first_step_s"], " s"), r["target"], r["reached"],
              fmt(r["steps_to_target"], "", 0), fmt(r["seconds_to_target"], " s"), fmt(r["test_exact"], "", 4),
              fmt(r["peak_rss_mb"], "", 0)] for r in result["solve"]],
        )  # fmt: skip
    if "steps" in result:
        out += md_table(
            f"Training steps/s: codebase (Lightning) vs bare PyTorch loop ({result['steps_per_run']} steps per run)",
            ["case", "bare loop steps/s", "codebase steps/s", "ratio"],
            [[r["case"], fmt(r["bare_steps_per_s"], "", 0), fmt(r["codebase_steps_per_s"], "", 0), fmt(r["ratio"])]
             for r in result["steps"]],
        )  # fmt: skip
    if "diagnostics" in result:
        out += md_table(
            "End-of-run diagnostics (`diagnostics=true`, the default) against the fit",
            ["task", "fit", "diagnostics", "diagnostics / fit", "process wall, on", "process wall, off"],
            [[r["task"], fmt(r["fit_s"], " s"), fmt(r["diagnostics_s"], " s", 3), fmt(r["share_of_fit"], "", 3),
              fmt(r["wall_on_s"], " s"), fmt(r["wall_off_s"], " s")] for r in result["diagnostics"]],
        )  # fmt: skip
    if "presets" in result:
        out += md_table(
            "Tutorial presets at full budget (one run each)",
            ["preset", "process wall", "steps", "test acc", "test exact", "chance (exact)"],
            [[r["preset"], f"{r['wall_s']:.1f} s", r["steps"], f"{r['test_acc']:.4f}", f"{r['test_exact']:.4f}",
              f"{r['chance_exact']:.2g}"] for r in result["presets"]],
        )  # fmt: skip
    if "help" in result:
        out += [f"`python train.py --help`: {fmt(result['help'], ' s')}", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="training steps per steps/s measurement")
    parser.add_argument(
        "--sections", default="solve,steps,help", help="comma list of solve,steps,diagnostics,presets,help"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    unknown = sections - {"solve", "steps", "diagnostics", "presets", "help"}
    if unknown:
        parser.error(
            f"--sections has unknown names {sorted(unknown)}; allowed: solve, steps, diagnostics, presets, help."
        )
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} must be >= 1.")

    import torch

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "repeats": args.repeats,
        "steps_per_run": args.steps,
    }
    with tempfile.TemporaryDirectory() as cwd:
        if "help" in sections:
            result["help"] = section_help(args.repeats)
        if "solve" in sections:
            result["solve"] = section_solve(args.repeats, Path(cwd))
        if "steps" in sections:
            result["steps"] = section_steps(args.repeats, args.steps)
        if "diagnostics" in sections:
            result["diagnostics"] = section_diagnostics(args.repeats, Path(cwd))
        if "presets" in sections:
            result["presets"] = section_presets(Path(cwd))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y-%m-%d_%H-%M-%S")
    md = to_markdown(result)
    (out / f"{stem}.md").write_text(md + "\n")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + md)
    print(f"Wrote {out / stem}.md and .json")


if __name__ == "__main__":
    main()
