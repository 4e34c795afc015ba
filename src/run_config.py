"""The run's config as a whole: the top-level keys and `paths` (declared here), the callbacks and
loggers (checked through the `_target_` each names), and `validate(cfg)`, which every entry point
(train.py, eval.py, predict.py, sweep.py presets, border searches) calls before any work.

Each node's schema lives beside the unit it configures: `task` in src/datamodules/tasks/, `model`
in src/models/node.py, `data` in src/datamodules/data_config.py, `trainer` and `optim` in
src/lit_models/, `hardware` in src/hardware.py, `summary` with the sweeps. The defaults of the
top-level keys, `paths`, `data`, `optim` and `trainer` live once, in conf/train.yaml; a schema
declares a default only for a key that yaml leaves out. A failure is one sentence (`ConfigError`,
src/schema.py); docs/bad_input.md lists them and tests/test_bad_input_table.py runs each row.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from omegaconf import DictConfig, OmegaConf
from pydantic import Field, model_validator

from src.datamodules.data_config import Data
from src.datamodules.tasks import make_task
from src.hardware import Hardware, check_processes
from src.lit_models.optim_config import Built, Optim, target_node
from src.lit_models.trainer_config import Trainer
from src.models.node import check_model
from src.schema import ConfigError, Node, NonNegInt, PosInt, Seed, check
from src.sweeps.judge import Summary

T = TypeVar("T")
NODES = ("paths", "data", "optim", "trainer", "task", "model", "hardware")
GROUPS = ("task", "model", "hardware", "callbacks", "logger", "debug", "experiment", "hparams_search")


def val_metrics(task: Any) -> tuple[str, ...]:
    """The validation metrics `SequenceModule` logs for this task: what a monitor may name."""
    names = ("loss", "acc", "exact") + (("mse", "mae") if task.objective == "regression" else ())
    return tuple(f"val/{n}" for n in names)


def check_metric(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not a metric this task logs; choose one of: {', '.join(allowed)}.")


class Paths(Node):
    output_dir: str  # the run folder: Hydra's, checked by `check_paths`


class Run(Node):
    """The top level of conf/train.yaml; each plain node is checked by its own schema."""

    seed: Seed  # model init and the training stream; val/test sets have their own seeds
    optimized_metric: str  # checked against the task's metrics (`check_metric`)
    ckpt_path: str | None = Field(
        min_length=1, json_schema_extra={"allowed": "use null, last, or the path of a .ckpt file"}
    )
    init_from: str | None = Field(min_length=1, json_schema_extra={"allowed": "use null or the path of a .ckpt file"})
    progress: Annotated[bool, Field(json_schema_extra={"allowed": "use true (banner and progress lines) or false"})]
    samples: NonNegInt
    diagnostics: Annotated[bool, Field(json_schema_extra={"allowed": "use true (probe the trained network) or false"})]
    paths: Paths
    data: dict[str, Any]
    optim: dict[str, Any]
    trainer: dict[str, Any]
    task: dict[str, Any]
    model: dict[str, Any]
    hardware: dict[str, Any]
    callbacks: dict[str, Any] | None = None
    logger: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None  # absent from the configs of runs made before it existed
    tags: list[Any] | None = None  # free labels (tags=[a,b]), recorded as an HParams column; absent before them

    @model_validator(mode="before")
    @classmethod
    def _nodes(cls, data: Any) -> Any:
        """`trainer=gpu` or `optim=sgd` (template-style groups this config does not have) make a
        node a string, which Hydra accepts as a value."""
        for key in NODES if isinstance(data, Mapping) else ():
            if key in data and not isinstance(data[key], Mapping):
                raise ConfigError(
                    f"{key}={data[key]!r} is not allowed; {key} is a node of keys (e.g. {key}.<key>=<value>), not a "
                    f"config group (the groups are: {', '.join(GROUPS)})."
                )
        for group in ("callbacks", "logger"):
            nodes = data.get(group) if isinstance(data, Mapping) else None
            if nodes is not None and not isinstance(nodes, Mapping):
                raise ConfigError(f"{group}={nodes!r} is not allowed; it must map names to config nodes (or be empty).")
            for name, node in (nodes or {}).items():
                if node is not None:  # `callbacks.<name>=null` switches one off
                    target_node(f"{group}.{name}", node)
        return data


# The callbacks whose keys can break a run before the first validation, by the class they name;
# every other key goes to the class, whose construction names a typo.
class Monitored(Built):
    monitor: str | None = None
    mode: Literal["max", "min"] = None


class TargetReached(Monitored):
    target: Annotated[float | None, Field(json_schema_extra={"allowed": "use a number or null"})] = None
    consecutive: PosInt = None


class ModelCheckpoint(Monitored):
    every_n_train_steps: NonNegInt | None = None
    save_top_k: Annotated[int, Field(ge=-1)] = None


class EarlyStopping(Monitored):
    patience: PosInt = None


CALLBACKS = {c.__name__: c for c in (TargetReached, ModelCheckpoint, EarlyStopping)}


def check_callbacks(callbacks: Mapping[str, Any] | None, metrics: tuple[str, ...]) -> None:
    for name, node in (callbacks or {}).items():
        schema = CALLBACKS.get(str(node["_target_"]).rsplit(".", 1)[-1]) if node else None
        if schema is None:
            continue
        cb = check(schema, f"callbacks.{name}", node)
        if cb.monitor is not None or schema is not ModelCheckpoint:  # a checkpoint without one keeps the last
            check_metric(f"callbacks.{name}.monitor", cb.monitor, metrics)


def check_paths(cfg: DictConfig) -> None:
    """Hydra writes a run's config and log to its run folder, train writes checkpoints, metrics
    and TensorBoard to paths.output_dir: they must be the same folder, or one run lies in two."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # composed by a test, a notebook, eval.py: no Hydra run folder
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir).absolute()
    given = Path(str(cfg.paths.output_dir)).absolute()
    if given != run_dir:
        raise ConfigError(
            f"paths.output_dir={cfg.paths.output_dir} is not allowed; it must stay the run folder, where Hydra "
            "writes the run's config and log, or one run would be split over two folders; choose the folder with "
            "hydra.run.dir (hydra.sweep.dir with -m)."
        )


def check_output_dir(key: str, path: str | Path) -> None:
    """The folder a run writes to must exist or be creatable, and be writable. Checked before
    anything is created, so a bad path leaves nothing behind."""
    p = Path(path).absolute()
    probe = p
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail on it with FileExistsError
            raise ConfigError(
                f"{key}={path} cannot be created: {probe} is a symbolic link to {os.readlink(probe)}, which does "
                "not exist; create its target or choose another folder."
            )
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {probe} is a file, not a folder; choose another folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} is not writable ({probe} refuses writes); choose another folder.")


def validate(cfg: DictConfig, memory: bool = True) -> tuple[Any, dict[str, Any], int]:
    """Every check that can fail on user input, before anything is built: (task, the network's
    keyword arguments, world size). `memory=False` skips the estimate of what training needs
    (predict.py, which trains nothing and reads no evaluation set)."""
    run = check(Run, "", OmegaConf.to_container(cfg, resolve=True))
    check_paths(cfg)
    task = make_task(run.task, tbptt=run.model.get("tbptt", 1))
    hardware = check(Hardware, "hardware", run.hardware)
    data = check(Data, "data", run.data, world=hardware.world, task=task)
    check(Trainer, "trainer", run.trainer, batches_per_epoch=data.batches_per_epoch, stateful=task.stateful)
    check(Optim, "optim", run.optim)
    metrics = val_metrics(task)
    check_metric("optimized_metric", run.optimized_metric, metrics)
    check_callbacks(run.callbacks, metrics)
    if run.summary is not None:
        check(Summary, "summary", run.summary, val_metrics=metrics)
    net_kwargs = check_model(run.model, task)  # last: the chosen cell and the topologies import torch
    from src.hardware import is_primary

    if memory and is_primary():  # for all of its processes; the others would see memory rank 0 already holds
        from src.limits import check_memory

        check_processes(hardware)
        check_memory(task, net_kwargs, data.model_dump(), hardware.model_dump(), hardware.world)
    return task, net_kwargs, hardware.world


def build(key: str, make: Callable[[], T]) -> T:
    """Construct a configured object; a failure becomes `ConfigError` naming the config node
    (a keyword the class does not take, a class path that does not exist)."""
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


# The keys a resume may change (the rest must match the run's saved config: src/checkpoints.py).
RESUMABLE = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "hardware.threads",
    "trainer.enable_progress_bar",
    "progress",
    "samples",
    "diagnostics",
    "logger",
    "summary",
)


def resumable(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RESUMABLE)
