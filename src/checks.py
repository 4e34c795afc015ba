"""What a run's config does not say until work starts: the `summary` node checked against the
task. Checkpoints and run records are read by `src.checkpoints`; the config nodes' schemas live
beside their units (src/run_config.py lists them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from src.config import ConfigError, check_known_keys
from src.datamodules.tasks import Task


def check_summary(summary: Mapping[str, Any], task: Task) -> None:
    """summary.*: how sweep.py judges a sweep of this config. Checked with the rest of the config,
    so a preset or an override with a bad one fails before any job, not after the last."""
    from src.run_config import val_metrics

    check_known_keys("summary", dict(summary), {"metric", "threshold", "x", "y"})
    metric = summary.get("metric")
    names = [m.split("/", 1)[1] for m in val_metrics(task)]
    allowed = [f"{split}/{n}" for split in ("test", "val") for n in names]
    if metric not in allowed:
        raise ConfigError(
            f"summary.metric={metric!r} is not allowed; it must be a metric this task logs: {', '.join(allowed)}."
        )
    threshold = summary.get("threshold")
    ok = isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and math.isfinite(threshold)
    if not ok:
        raise ConfigError(f"summary.threshold={threshold!r} is not allowed; it must be a finite number.")
    for axis in ("x", "y"):
        value = summary.get(axis)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(
                f"summary.{axis}={value!r} is not allowed; it must be a swept key (e.g. model.hidden) or null."
            )
