"""Helpers for the reliability tests: compare metrics.json values, snapshot run folders, start a
CLI run in the background and wait for a file it writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

# metrics.json entries that measure time or memory: they differ between identical runs
TIMINGS = {
    "fit_time_s",
    "wall_time_s",
    "startup_s",
    "first_step_at",
    "train_batches_per_s",
    "validation_s",
    "diagnostics_s",
    "peak_rss_mb",
}


def comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json values without timings (the target's `seconds` and `first_hit_seconds` included)."""
    out = {k: v for k, v in metrics.items() if k not in TIMINGS}
    if isinstance(out.get("target"), dict):
        out["target"] = {k: v for k, v in out["target"].items() if k not in ("seconds", "first_hit_seconds")}
    return out


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """relative path -> (sha1 of the contents, mtime in ns) of every file under folder."""
    return {
        str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """train.py in the background, as a user would start it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_file(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    """Poll until a file matching pattern appears under root; fail if the process ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"train.py ended (rc {proc.returncode}) before {pattern} appeared:\n{out}\n{err}")
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    raise AssertionError(f"{pattern} did not appear under {root} within {timeout} s")


def abort_when(value: Any, crash_at: Any) -> Any:
    """A callback for `+callbacks.boom=...` in a sweep: the job whose `value` equals `crash_at` dies
    at once with SIGABRT (as a segfault or an out-of-memory kill would end it); the others get a
    callback that does nothing."""
    import pytorch_lightning as pl

    if value == crash_at:
        os.abort()
    return pl.Callback()
