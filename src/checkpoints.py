"""The one reader of checkpoints and run records: every entry point (train's ckpt_path and
init_from, predict.py, eval.py, the resume on train.py's command line) reads a checkpoint here.

- `checksum` / `verify_checksum`: a checkpoint is checked against `<file>.sha256` before anything
  loads it; a damaged file is refused in one sentence, a missing checksum is said in one.
- `check_ckpt_path`, `checkpoint_step`, `check_checkpoint`: exists, loads, fits the model.
- `run_identity` / `check_same_run`: a checkpoint records which run it belongs to and the config it
  was trained on (all but the keys a resume may change); a resume of another run, or of an edited
  config, is refused.
- `run_status`: what a run folder's metrics.json says.

`src.reliability.AtomicCheckpointIO` is the one writer. Light at import (torch inside the readers).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from src.schema import ConfigError

SUMS = ".sha256"
RUN_ID = ".run_id"  # in the run folder: the id every checkpoint of the run carries
RUN_KEY = "run"  # in a checkpoint: {"id": ..., "config": the config keys a resume may not change}
NOT_COMPARED = ("paths", "ckpt_path", "init_from")  # where the run is, and how it was started


def run_status(run_dir: Path) -> str | None:
    """The status a run folder's metrics.json records (completed, interrupted, failed), if any."""
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def checksum(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def sums_path(path: Path) -> Path:
    return path.with_name(path.name + SUMS)


def listed_digests(path: Path) -> list[str]:
    """The digests `<path>.sha256` lists for path, newest first (`<digest>  <name>` lines). While a
    checkpoint is being replaced it lists the new file's digest and the old one's, so a kill at any
    point of the write leaves a file that matches (src.reliability.AtomicCheckpointIO)."""
    try:
        lines = sums_path(path).read_text().splitlines()
    except OSError:
        return []
    return [parts[0] for parts in (line.split() for line in lines) if len(parts) == 2 and parts[1] == path.name]


def verify_checksum(path: Path, key: str | None = "ckpt_path") -> bool:
    """A checkpoint with a `<path>.sha256` beside it (every checkpoint this code writes) must match
    it: garbage, a truncated file or another file's checksum is refused here, in one sentence, before
    anything loads it. Returns False when there is no checksum to check (say so: `unchecked`)."""
    path = Path(path)
    sums = sums_path(path)
    if not sums.is_file():
        return False
    if checksum(path) not in listed_digests(path):
        raise ConfigError(
            f"{f'{key}=' if key else 'checkpoint '}{path} does not match its checksum ({sums.name}): the file is "
            "damaged (truncated or overwritten); use another checkpoint of the run."
        )
    return True


def unchecked(path: Path) -> str:
    """The warning for a checkpoint without a checksum file (copied without it, or written elsewhere)."""
    return (
        f"warning: {path} has no checksum file ({Path(path).name}{SUMS}), so damage to it cannot be detected; "
        "loading it as it is."
    )


def load(path: Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint as a dict, read on the CPU; not a Lightning checkpoint: one sentence."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
            raise KeyError("state_dict" if not isinstance(ckpt, dict) or "state_dict" not in ckpt else "global_step")
    except Exception as err:
        raise ConfigError(
            f"{key}={path} is not a Lightning checkpoint ({type(err).__name__}: {str(err).rstrip('.')})."
        ) from err
    return ckpt


def read_weights(path: Path) -> tuple[dict[str, Any], bool]:
    """(state_dict, whether a checksum vouched for it) of a checkpoint used for inference (predict.py,
    eval.py): checked against its checksum, then loaded as tensors only (`weights_only`)."""
    import torch

    summed = verify_checksum(path, key=None)
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"], summed


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was saved at."""
    return int(load(path)["global_step"])


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


def check_checkpoint(path: Path, module: Any, key: str = "ckpt_path") -> tuple[dict[str, Any], bool]:
    """The checkpoint must be intact, load and fit this model: caught here as one sentence rather
    than as Lightning's state-dict traceback halfway into fit. Returns (the loaded checkpoint,
    whether a checksum vouched for it)."""
    summed = verify_checksum(path, key)
    ckpt = load(path, key)
    state = ckpt["state_dict"]
    for name, tensor in module.state_dict().items():
        if name not in state or state[name].shape != tensor.shape:
            got = tuple(state[name].shape) if name in state else "missing"
            raise ConfigError(
                f"{key}={path} was saved by a different model ({name}: {got} in the checkpoint, "
                f"{tuple(tensor.shape)} here); "
                + ("resume with the run's own config." if key == "ckpt_path" else "init_from needs the same model.")
            )
    return ckpt, summed


def check_run_checkpoint(path: Path, run: Path) -> int:
    """train.py's command line, resuming a checkpoint in its run folder: the checkpoint is intact and
    belongs to this run, trained on the run's saved `.hydra/config.yaml`; returns its step."""
    from omegaconf import OmegaConf

    verify_checksum(path)
    ckpt = load(path)
    try:
        saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    except Exception as err:  # not YAML: the run's config is damaged
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else ""
        raise ConfigError(
            f"ckpt_path={path} belongs to {run}, whose .hydra/config.yaml cannot be read ({type(err).__name__}: "
            f"{first}); a resume trains that config, so restore it."
        ) from None
    check_same_run(path, ckpt, {"config": fixed_config(saved)}, run, saved=run / ".hydra" / "config.yaml")
    return int(ckpt["global_step"])


# -- which run a checkpoint belongs to ----------------------------------------------------------
def fixed_config(cfg: Any) -> dict[str, Any]:
    """The config keys a resume may not change (all but src.run_config.RESUMABLE and where the run
    lives), unresolved, so a run folder copied elsewhere compares equal."""
    from omegaconf import OmegaConf

    from src.run_config import resumable

    def keep(node: Any, prefix: str) -> Any:
        if not isinstance(node, Mapping):
            return node
        out = {}
        for k, v in node.items():
            key = f"{prefix}{k}"
            if key not in NOT_COMPARED and not resumable(key):
                out[str(k)] = keep(v, key + ".")
        return out

    return keep(OmegaConf.to_container(cfg, resolve=False), "")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, Mapping) or not node:
        return {prefix.rstrip("."): node}
    return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def run_identity(out_dir: Path, cfg: Any, ckpt: Mapping[str, Any] | None) -> dict[str, Any]:
    """What every checkpoint of this run records: the run's id (`<run>/.run_id`, made by the run's
    first start, or taken from the checkpoint a new folder continues) and its fixed config. Reads
    only; `keep_run_id` writes the id once the run starts."""
    path = Path(out_dir) / RUN_ID
    run_id = path.read_text().strip() if path.is_file() else None
    if run_id is None and ckpt is not None:
        run_id = (ckpt.get(RUN_KEY) or {}).get("id")
    return {"id": run_id or secrets.token_hex(8), "config": fixed_config(cfg)}


def keep_run_id(out_dir: Path, identity: Mapping[str, Any]) -> None:
    path = Path(out_dir) / RUN_ID
    if not path.is_file():
        path.write_text(str(identity["id"]) + "\n")


def check_same_run(
    path: Path, ckpt: Mapping[str, Any], identity: Mapping[str, Any], out_dir: Path, saved: Path | None = None
) -> None:
    """A resume continues the run the checkpoint belongs to, trained on the same config, or is
    refused: a checkpoint copied in from another run, or a run whose saved config was edited after
    it started (`saved`: the run's config file the identity was read from). Checkpoints written
    before runs had an identity are not checked."""
    recorded = ckpt.get(RUN_KEY)
    if not isinstance(recorded, Mapping):
        return
    folder_id = (Path(out_dir) / RUN_ID).read_text().strip() if (Path(out_dir) / RUN_ID).is_file() else None
    if folder_id is not None and recorded.get("id") not in (None, folder_id):
        raise ConfigError(
            f"ckpt_path={path} belongs to another run (run id {recorded['id']}; {out_dir} is run {folder_id}), "
            "so resuming it here would mix two runs; resume that run's own folder, or start a new run from "
            f"these weights with init_from={path}."
        )
    was, now = _flat(recorded.get("config") or {}), _flat(identity["config"])
    for key in [*was, *(k for k in now if k not in was)]:
        if was.get(key, "<unset>") != now.get(key, "<unset>"):
            shown = {label: repr(d[key]) if key in d else "unset" for label, d in (("was", was), ("now", now))}
            if saved is not None:
                there = f"{saved} now has {key}={shown['now']}: the run's config was edited after it started"
                remedy = f"restore {key}"
            else:
                there, remedy = f"this run has {key}={shown['now']}", "resume with the config it was trained on"
            raise ConfigError(
                f"ckpt_path={path} was trained with {key}={shown['was']}, but {there}; a resume continues the run as "
                f"it was trained; {remedy}, or start a new run from these weights with init_from={path}."
            )


def start_point(cfg: Any, ckpt_path: Path | None, module: Any, out_dir: Path) -> tuple[dict[str, Any], int, list[str]]:
    """Check what a run starts from (`ckpt_path`: the run it continues; `init_from`: weights for a
    new run, loaded into module here) before anything is written. Returns (the run's identity for
    its checkpoints, the step it continues from, warnings to print once the run starts)."""
    warnings: list[str] = []
    init = Path(str(cfg.init_from)) if cfg.get("init_from") is not None else None
    if init is not None and (ckpt_path is not None or not init.is_file()):
        raise ConfigError(
            f"init_from={init} must be a checkpoint file, and is for a new run, so not with ckpt_path; "
            "use ckpt_path to continue a run, init_from to start a new one from its weights."
        )
    if ckpt_path is not None:
        ckpt, summed = check_checkpoint(ckpt_path, module)
        identity = run_identity(out_dir, cfg, ckpt)
        check_same_run(ckpt_path, ckpt, identity, out_dir)
        warnings += [] if summed else [unchecked(ckpt_path)]
        return identity, int(ckpt["global_step"]), warnings
    if init is not None:  # a new run from trained weights: fresh optimizer, step 0
        ckpt, summed = check_checkpoint(init, module, key="init_from")
        module.load_state_dict(ckpt["state_dict"])
        warnings += [] if summed else [unchecked(init)]
    return run_identity(out_dir, cfg, None), 0, warnings
