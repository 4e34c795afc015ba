"""Behaviour preserved: every default task and every `experiment=` preset, trained for a fixed short
budget on one seed, must give the same numbers before and after a refactor.

    python benchmarks/same_numbers.py --out before.json            # on the old commit
    python benchmarks/same_numbers.py --out after.json --compare before.json

Each case runs `train.py` as a user does (one thread, no logger, no diagnostics, `max_steps` capped
so a case takes seconds) and keeps what the run folder's metrics.json says: status, steps, what
stopped it, and every test/* and val/* number. `--compare` prints a table of the cases and exits 1
when a number differs (exactly: the same seed on the same machine is bit-identical).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["hardware.threads=1", "logger=none", "diagnostics=false", "progress=false", "seed=0"]


def cases(budget: int) -> dict[str, list[str]]:
    """One case per task yaml (default model) and per experiment preset, at `budget` steps."""
    out = {}
    for group in ("task", "experiment"):
        for path in sorted((ROOT / "conf" / group).glob("*.yaml")):
            if path.stem.startswith("_"):
                continue
            case = [f"{group}={path.stem}", f"trainer.max_steps={budget}"]
            # presets validate every few hundred steps or more: at least one validation inside the budget
            out[f"{group}={path.stem}"] = case + ["trainer.val_check_interval=100"] * (group == "experiment")
    return out


def run(overrides: list[str], folder: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, *COMMON, f"hydra.run.dir={folder}"]
    res = subprocess.run(cmd, cwd=folder.parent, capture_output=True, text=True, timeout=900)
    metrics = folder / "metrics.json"
    if not metrics.exists():
        return {"status": f"exit {res.returncode}: {res.stderr.strip().splitlines()[-1:]}"}
    m = json.loads(metrics.read_text())
    keep = {k: v for k, v in m.items() if k.startswith(("test/", "val/"))}
    return {"status": m.get("status"), "steps": m.get("steps"), "stopped_by": m.get("stopped_by"), **keep}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compare", type=Path)
    p.add_argument("--budget", type=int, default=300, help="trainer.max_steps of every case")
    p.add_argument("--only", nargs="*", help="case names to run (default: all)")
    a = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(cases(a.budget).items()):
            if a.only and name not in a.only:
                continue
            results[name] = run(overrides, Path(tmp) / f"case{i}")
            print(f"{name}: {results[name].get('status')} steps={results[name].get('steps')}", flush=True)
    a.out.write_text(json.dumps(results, indent=1, sort_keys=True))
    if not a.compare:
        return 0
    before = json.loads(a.compare.read_text())
    bad = 0
    print("\n| case | steps before | after | stopped_by | test numbers |\n|---|---|---|---|---|")
    for name in sorted(results if a.only else set(before) | set(results)):  # --only: the cases it ran
        b, r = before.get(name, {}), results.get(name, {})
        same = b == r
        bad += not same
        tests = ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in sorted(r.items()) if k.startswith("test/"))
        verdict = tests if same else f"DIFFERS: {sorted(k for k in set(b) | set(r) if b.get(k) != r.get(k))}"
        print(f"| {name} | {b.get('steps')} | {r.get('steps')} | {r.get('stopped_by')} | {verdict} |")
    print(f"\n{len(results) - bad} of {len(results)} cases identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
