"""What a run's config does not say until work starts: the `summary` node checked against the
task, and the checkpoints and run folders an entry point reads (ckpt_path, init_from, a run's
status). The config nodes' schemas live beside their units (src/run_config.py lists them).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
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


def run_status(run_dir: Path) -> str | None:
    """The status a run folder's metrics.json records (completed, interrupted, failed), if any."""
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def check_ckpt_path(ckpt: str | None, out_dir: Path) -> Path | None:
    """`last` means this run folder's checkpoints/last.ckpt (train.py has already turned `last`
    on the command line into the newest unfinished run's checkpoint)."""
    if ckpt is None:
        return None
    path = out_dir / "checkpoints" / "last.ckpt" if ckpt == "last" else Path(ckpt)
    if not path.is_file():
        where = f" (looked for {path})" if ckpt == "last" else ""
        raise ConfigError(
            f"ckpt_path={ckpt} does not exist{where}; pass a checkpoint file such as <run>/checkpoints/last.ckpt."
        )
    run_dir = path.parent.parent
    if path.parent.name == "checkpoints" and run_status(run_dir) == "completed":
        raise ConfigError(
            f"ckpt_path={ckpt} belongs to a completed run ({run_dir / 'metrics.json'}); there is nothing to "
            f"resume; to train it further, start a new run from its weights with init_from={ckpt}."
        )
    return path


def checksum(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path) -> None:
    """A checkpoint with a `<path>.sha256` beside it (every checkpoint this code writes) must match
    it: garbage or a truncated file is refused here, in one sentence, before anything loads it."""
    path = Path(path)
    sums = path.with_name(path.name + ".sha256")
    if not sums.is_file():
        return  # written elsewhere: torch.load and the shape check below still guard it
    expected = sums.read_text().split()[0] if sums.read_text().split() else ""
    if checksum(path) != expected:
        raise ConfigError(
            f"ckpt_path={path} does not match its checksum ({sums.name}): the file is damaged (truncated or "
            "overwritten); use another checkpoint of the run."
        )


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was saved at."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={path} is not a Lightning checkpoint ({type(err).__name__}: {str(err).rstrip('.')})."
        ) from err


def check_checkpoint(path: Path, module: Any, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint must be intact, load and fit this model: caught here as one sentence rather
    than as Lightning's state-dict traceback halfway into fit. Returns the loaded checkpoint."""
    import torch

    verify_checksum(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt["state_dict"]
    except Exception as err:
        raise ConfigError(
            f"{key}={path} is not a Lightning checkpoint ({type(err).__name__}: {str(err).rstrip('.')})."
        ) from err
    own = module.state_dict()
    for name, tensor in own.items():
        if name not in state or state[name].shape != tensor.shape:
            got = tuple(state[name].shape) if name in state else "missing"
            raise ConfigError(
                f"{key}={path} was saved by a different model ({name}: {got} in the checkpoint, "
                f"{tuple(tensor.shape)} here); "
                + ("resume with the run's own config." if key == "ckpt_path" else "init_from needs the same model.")
            )
    return ckpt
