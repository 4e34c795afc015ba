"""Checks for the config groups `src.config` does not cover: optim, trainer, callbacks, logger,
the top-level keys, the output folder and ckpt_path.

`check_run` is light (no torch) and runs with the other checks in `src.run.validate`, before the
heavy imports; `build` turns a failure to construct a configured object into the same kind of
one-sentence `ConfigError`, before anything is written. The README's "Bad input" table
(docs/bad_input.md) lists every message; tests/test_bad_input_table.py runs each row.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, Task, check_known_keys

T = TypeVar("T")

# Trainer arguments that `train` sets from other groups (or fixes by design); a value under
# `trainer` would clash with them, so the message says where the setting lives.
TRAINER_OWNED = {
    "accelerator": "hardware.accelerator",
    "devices": "hardware.devices",
    "num_nodes": "hardware.num_nodes",
    "strategy": "hardware.strategy",
    "precision": "hardware.precision",
    "callbacks": "the callbacks group",
    "logger": "the logger group",
    "default_root_dir": "paths.output_dir",
    "plugins": "src/run.py (atomic checkpoint writes)",
    "check_val_every_n_epoch": "trainer.val_check_interval (validations count batches across epochs)",
    "reload_dataloaders_every_n_epochs": "the data module (fresh data every epoch)",
    "num_sanity_val_steps": "src/run.py (no sanity check: evaluation sets are fixed)",
    "enable_checkpointing": "the callbacks group (model_checkpoint, last_checkpoint)",
    "gradient_clip_val": "optim.grad_clip",
    "gradient_clip_algorithm": "optim.grad_clip (clipping by norm)",
    "overfit_batches": "data.overfit_batches",
    "limit_train_batches": "data.batches_per_epoch",
    "fast_dev_run": "debug=fast",
}
# Trainer arguments that pass through `trainer` unchanged, and what each accepts; any other key
# is refused (a typo would be a TypeError from Trainer, a supported-but-unchecked one could crash
# mid-run or change training silently).
TRAINER_BOOLS = ("enable_progress_bar", "enable_model_summary", "benchmark", "detect_anomaly", "inference_mode")
TRAINER_KEYS = {
    "max_epochs", "max_steps", "min_steps", "min_epochs", "val_check_interval", "log_every_n_steps", "deterministic",
    "accumulate_grad_batches", "limit_val_batches", "limit_test_batches", "profiler", *TRAINER_BOOLS,
}  # fmt: skip
# The top level of conf/train.yaml, and the keys of its plain nodes (the `_target_` nodes, such as
# optim.optimizer, the callbacks and loggers, are checked by the constructor they name).
TOP_KEYS = {"seed", "optimized_metric", "ckpt_path", "init_from", "samples", "progress", "diagnostics", "summary", "paths",
            "data", "optim", "trainer", "task", "model", "hardware", "callbacks", "logger"}  # fmt: skip
NODES = ("paths", "data", "optim", "trainer", "task", "model", "hardware")
GROUPS = ("task", "model", "hardware", "callbacks", "logger", "debug", "experiment", "hparams_search")
OPTIM_KEYS = {"optimizer", "scheduler", "grad_clip"}
PATHS_KEYS = {"output_dir"}
SUMMARY_KEYS = {"metric", "threshold", "x", "y"}
# Adam moves every weight by about lr per step whatever the gradient's scale, and these networks'
# weights are O(0.1): a step of 10 already wipes them out at the first update, so a larger lr is a
# typo (1e38 overflows to inf/NaN); SGD-style optimizers are no safer at that size.
MAX_LR = 10.0
# Schedulers that step on a monitored metric: SequenceModule steps schedulers by count ("interval:
# step"), with no metric to give them.
METRIC_SCHEDULERS = ("ReduceLROnPlateau",)
# Integer arguments of torch's count-based schedulers that divide by themselves (0 crashes at the
# first step) or are lengths.
SCHEDULER_COUNTS = ("step_size", "T_max", "T_0", "total_steps", "total_iters", "step_size_up")


def _int(key: str, value: Any, low: int, allow_minus_one: bool = False) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= low or (allow_minus_one and value == -1))
    if not ok:
        extra = " or -1 (no limit)" if allow_minus_one else ""
        raise ConfigError(f"{key}={value!r} is not allowed; it must be an integer >= {low}{extra}.")


def _number(key: str, value: Any, allow_null: bool = False) -> None:
    if value is None and allow_null:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed; it must be a number > 0{' or null' if allow_null else ''}.")


def _target_node(key: str, node: Any) -> None:
    if not isinstance(node, Mapping) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"{key}={node!r} is not allowed; it must be a config node with a _target_ (a class path).")


def val_metrics(task: Task) -> tuple[str, ...]:
    """The validation metrics `SequenceModule` logs for this task: what a monitor may name."""
    names = ("loss", "acc", "exact") + (("mse", "mae") if task.objective == "regression" else ())
    return tuple(f"val/{n}" for n in names)


def _node(key: str, value: Any) -> dict[str, Any]:
    """A plain config node; `trainer=gpu` or `optim=sgd` (template-style groups this config does
    not have) make it a string, which Hydra accepts as a value."""
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(
        f"{key}={value!r} is not allowed; {key} is a node of keys (e.g. {key}.<key>=<value>), not a config group "
        f"(the groups are: {', '.join(GROUPS)})."
    )


def _known(node: str, given: Mapping[str, Any], known: set[str]) -> None:
    check_known_keys(node, dict(given), known)


def check_nodes(cfg: DictConfig) -> None:
    """The top level: known keys only, and every plain node a node (checked first, so the other
    checks can read them)."""
    c = OmegaConf.to_container(cfg, resolve=False)
    _known("", c, TOP_KEYS)
    for key in NODES:
        _node(key, c.get(key))
    _known("paths", c["paths"], PATHS_KEYS)
    if "summary" in c:  # absent from the configs of runs made before it existed
        _known("summary", _node("summary", c["summary"]), SUMMARY_KEYS)


def check_summary(summary: Mapping[str, Any], task: Task) -> None:
    """summary.*: how sweep.py judges a sweep of this config. Checked with the rest of the config,
    so a preset or an override with a bad one fails before any job, not after the last."""
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


def check_paths(cfg: DictConfig) -> None:
    """Hydra writes a run's config and log to its run folder, train writes checkpoints, metrics
    and TensorBoard to paths.output_dir: they must be the same folder, or one run lies in two."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # composed by a test or a notebook: no Hydra run folder
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir).absolute()
    given = Path(str(cfg.paths.output_dir)).absolute()
    if given != run_dir:
        raise ConfigError(
            f"paths.output_dir={cfg.paths.output_dir} is not allowed; it must stay the run folder, where Hydra "
            "writes the run's config and log, or one run would be split over two folders; choose the folder with "
            "hydra.run.dir (hydra.sweep.dir with -m)."
        )


def check_run(cfg: DictConfig, task: Task) -> None:
    """Top-level keys, optim, trainer, callbacks and logger nodes (plain values, no imports)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    check_paths(cfg)
    seed = c.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r} is not allowed; it must be an integer in [0, 2**32).")
    _int("samples", c.get("samples"), 0)
    allowed = val_metrics(task)
    if c.get("optimized_metric") not in allowed:
        raise ConfigError(
            f"optimized_metric={c.get('optimized_metric')!r} is not a metric this task logs; "
            f"choose one of: {', '.join(allowed)}."
        )
    ckpt = c.get("ckpt_path")
    if ckpt is not None and (not isinstance(ckpt, str) or not ckpt):
        raise ConfigError(f"ckpt_path={ckpt!r} is not allowed; use null, last, or the path of a .ckpt file.")

    optim = c["optim"]
    _known("optim", optim, OPTIM_KEYS)
    _target_node("optim.optimizer", optim.get("optimizer"))
    if "lr" in optim["optimizer"]:
        lr = optim["optimizer"]["lr"]
        _number("optim.optimizer.lr", lr)
        if lr > MAX_LR:
            raise ConfigError(
                f"optim.optimizer.lr={lr!r} is not allowed; it must be a number > 0 and <= {MAX_LR:g} (a step that "
                "large wipes out the weights at the first update)."
            )
    _number("optim.grad_clip", optim.get("grad_clip"), allow_null=True)
    if optim.get("scheduler") is not None:
        check_scheduler(optim["scheduler"])

    trainer = c["trainer"]
    for key, home in TRAINER_OWNED.items():
        if key in trainer:
            raise ConfigError(f"trainer.{key} is set by {home}, not under trainer; remove trainer.{key}.")
    _known("trainer", trainer, TRAINER_KEYS)
    _int("trainer.max_epochs", trainer.get("max_epochs", -1), 1, allow_minus_one=True)
    _int("trainer.max_steps", trainer.get("max_steps", -1), 1, allow_minus_one=True)
    if trainer.get("max_epochs", -1) == -1 and trainer.get("max_steps", -1) == -1:
        raise ConfigError(
            "trainer.max_epochs=-1 with trainer.max_steps=-1 would train forever; set one of them to a limit."
        )
    vci = trainer.get("val_check_interval", 1)
    if isinstance(vci, bool) or not isinstance(vci, int) or vci < 1:
        raise ConfigError(
            f"trainer.val_check_interval={vci!r} is not allowed; it must be an integer >= 1 (training batches "
            "between validations, counted across epochs)."
        )
    _int("trainer.log_every_n_steps", trainer.get("log_every_n_steps", 50), 1)
    if trainer.get("deterministic", False) not in (True, False, "warn"):
        raise ConfigError(
            f"trainer.deterministic={trainer['deterministic']!r} is not allowed; choose one of: true, false, warn."
        )
    for key in TRAINER_BOOLS:
        if not isinstance(trainer.get(key, False), bool):
            raise ConfigError(f"trainer.{key}={trainer[key]!r} is not allowed; it must be true or false.")
    _int("trainer.min_steps", trainer.get("min_steps", 0), 0)
    _int("trainer.min_epochs", trainer.get("min_epochs", 0), 0)
    accumulate = trainer.get("accumulate_grad_batches", 1)
    _int("trainer.accumulate_grad_batches", accumulate, 1)
    if accumulate > 1 and task.stateful:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={accumulate} is not allowed with task.stateful=true, whose training "
            "step steps the optimizer itself (model.tbptt); use 1."
        )
    for key in ("limit_val_batches", "limit_test_batches"):
        v = trainer.get(key, 1.0)
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not (0 < v <= 1 if isinstance(v, float) else v >= 1)
        ):
            raise ConfigError(
                f"trainer.{key}={v!r} is not allowed; it must be a fraction in (0, 1] or a number of batches >= 1."
            )
    if trainer.get("profiler") not in (None, "simple", "advanced", "pytorch"):
        raise ConfigError(
            f"trainer.profiler={trainer['profiler']!r} is not allowed; choose one of: null, simple, advanced, pytorch."
        )
    check_budget(trainer, c["data"])

    for group in ("callbacks", "logger"):
        nodes = c.get(group) or {}
        if not isinstance(nodes, Mapping):
            raise ConfigError(f"{group}={nodes!r} is not allowed; it must map names to config nodes (or be empty).")
        for name, node in nodes.items():
            if node is not None:  # `callbacks.<name>=null` switches one off
                _target_node(f"{group}.{name}", node)
    for name, node in (c.get("callbacks") or {}).items():
        if not node:
            continue
        target = node["_target_"].rsplit(".", 1)[-1]
        if target in ("TargetReached", "ModelCheckpoint", "EarlyStopping"):
            monitor = node.get("monitor")
            if (monitor is not None or target != "ModelCheckpoint") and monitor not in allowed:
                raise ConfigError(
                    f"callbacks.{name}.monitor={monitor!r} is not a metric this task logs; "
                    f"choose one of: {', '.join(allowed)}."
                )
            if node.get("mode", "max") not in ("max", "min"):
                raise ConfigError(f"callbacks.{name}.mode={node['mode']!r} is not allowed; choose one of: max, min.")
        if target == "TargetReached":
            if node.get("target") is not None:
                t = node["target"]
                if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
                    raise ConfigError(f"callbacks.{name}.target={t!r} is not allowed; use a number or null.")
            _int(f"callbacks.{name}.consecutive", node.get("consecutive", 1), 1)
        if target == "ModelCheckpoint":
            if node.get("every_n_train_steps") is not None:
                _int(f"callbacks.{name}.every_n_train_steps", node["every_n_train_steps"], 0)
            _int(f"callbacks.{name}.save_top_k", node.get("save_top_k", 1), -1)
        if target == "EarlyStopping":
            _int(f"callbacks.{name}.patience", node.get("patience", 3), 1)


def check_scheduler(node: Any) -> None:
    """A count-based torch scheduler: SequenceModule steps it after every optimizer step."""
    _target_node("optim.scheduler", node)
    name = node["_target_"].rsplit(".", 1)[-1]
    if name in METRIC_SCHEDULERS:
        raise ConfigError(
            f"optim.scheduler={name} is not allowed; it steps on a monitored metric, while schedulers here step "
            "after every optimizer step with none; use a count-based one such as StepLR or CosineAnnealingLR."
        )
    for key in SCHEDULER_COUNTS:
        if key in node:
            _int(f"optim.scheduler.{key}", node[key], 1)
    if "gamma" in node:
        _number("optim.scheduler.gamma", node["gamma"])


def check_budget(trainer: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """A validation interval longer than the whole budget means no validation ever runs: no target
    can be reached, no best checkpoint exists, the run reports `best None`."""
    accumulate = trainer.get("accumulate_grad_batches", 1)
    limits = []
    if trainer.get("max_steps", -1) != -1:
        limits.append((trainer["max_steps"] * accumulate, f"trainer.max_steps={trainer['max_steps']}"))
    if trainer.get("max_epochs", -1) != -1:
        per_epoch = data.get("batches_per_epoch")
        if isinstance(per_epoch, int) and not isinstance(per_epoch, bool):
            limits.append(
                (
                    trainer["max_epochs"] * per_epoch,
                    f"trainer.max_epochs={trainer['max_epochs']} x data.batches_per_epoch={per_epoch}",
                )
            )
    if not limits:
        return
    budget, why = min(limits)
    vci = trainer.get("val_check_interval", 1)
    if vci > budget:
        raise ConfigError(
            f"trainer.val_check_interval={vci} exceeds the training budget of {budget} batches ({why}), so no "
            f"validation would ever run; use val_check_interval <= {budget}."
        )


def check_output_dir(key: str, path: str | Path) -> None:
    """The folder a run writes to must exist or be creatable, and be writable. Checked before
    anything is created, so a bad path leaves nothing behind."""
    p = Path(path).absolute()
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {probe} is a file, not a folder; choose another folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} is not writable ({probe} refuses writes); choose another folder.")


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


def build(key: str, make: Callable[[], T]) -> T:
    """Construct a configured object; a failure becomes `ConfigError` naming the config node."""
    try:
        return make()
    except ConfigError:
        raise
    except Exception as err:
        root = err
        while root.__cause__ is not None:  # Hydra wraps the real error in InstantiationException
            root = root.__cause__
        text = str(root).strip().splitlines()[0].rstrip(".") if str(root).strip() else ""
        raise ConfigError(f"{key} could not be built from its config ({type(root).__name__}: {text}).") from err
