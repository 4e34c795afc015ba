"""train(cfg): validate, build, fit, test, and write the run folder. No Hydra decorator here, so
tests and sweeps call it in-process with a config composed by Hydra's compose API."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src import signals
from src.checkpoints import check_ckpt_path, keep_run_id, start_point
from src.files import write_json
from src.hardware import build_strategy
from src.run_config import build, check_output_dir, validate
from src.schema import ConfigError
from src.terminal import banner, keep_log, logged_run, print_summary, weights_used

T_PROCESS = time.perf_counter()  # first import of this module ~ process start-up end


def stopped_by(trainer: Any, target: Any) -> str:
    """Why a completed fit ended: `target` (the validation target held), `plateau` (an
    EarlyStopping callback: the monitored metric stopped improving), `max_steps` or `max_epochs`
    (the budget)."""
    from pytorch_lightning.callbacks import EarlyStopping

    if target is not None and target.reached_step is not None:
        return "target"
    if any(isinstance(c, EarlyStopping) and c.wait_count >= c.patience for c in trainer.callbacks):
        return "plateau"
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    return "max_epochs"


def quiet_framework() -> None:
    """Drop Lightning's start-up chatter and warnings that do not apply to this design: our
    IterableDataset defines __len__ and shards by worker itself; evaluation sets are pre-built
    batches on the device, so 'few workers' does not apply."""
    import logging
    import warnings

    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    # an INFO line on every interrupt checkpoint ("`weights_only` was not set, defaulting to `False`")
    logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    for pattern in (
        ".*IterableDataset.*has `__len__` defined.*",
        ".*does not have many workers.*",
        ".*LeafSpec.*",
        # SequenceModule.transfer_batch_to_device hands back batches the stream made on the device
        ".*overridden `transfer_batch_to_device` in `LightningModule`.*",
        # resuming: the folder holds the run's own checkpoints, and the data stream is resumable
        # (SequenceDataModule restores its position from the batch progress)
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*resuming from a checkpoint that ended before the epoch ended.*",
        # stateful tasks: the checkpoint holds the weights after the step, which is what a resume needs
        ".*manual optimization and every_n_train_steps.*",
        # chance levels come from the full test set, identical on every rank: nothing to reduce (nor
        # in the last update's loss, which metrics.json reports from rank 0)
        r".*self.log\('(val_chance/|train/loss').*sync_dist=True.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def build_net(task: Any, net_kwargs: dict[str, Any]):
    """Instantiate the network from the model node, adding the shapes the task implies."""
    from hydra.utils import instantiate

    kwargs = {k: v for k, v in net_kwargs.items() if k != "tbptt"}
    kwargs.update(context=task.context, features=task.features)  # shapes the task implies (one_to_one, adding)
    n_out = 1 if task.objective == "regression" else task.vocab
    shapes = {"vocab": task.vocab, "encoding": task.encoding, "n_out": n_out, "out_len": task.out_len}
    return instantiate(kwargs, **shapes, scale=task.scale, pad=task.pad_start)


def sample_table(module: Any, dm: Any, n: int) -> list[dict[str, Any]]:
    """Expected vs predicted on the first n test windows; none for n=0 (`samples=0`), without a
    forward pass over an empty batch, which a topology that reshapes its window cannot take."""
    if n == 0:
        return []
    import torch

    x, y, mask = (t[:n] for t in dm.test_set)
    with torch.no_grad():
        module.eval()
        pred = module.predict_values(module.net(x.to(module.device))[0]).cpu()
    rows = []
    for xi, yi, mi, pi in zip(x.cpu(), y.cpu(), mask.cpu(), pred, strict=True):
        p = pi[mi].tolist()
        rows.append(
            {
                "input": xi.tolist(),
                "expected": yi[mi].tolist(),
                "predicted": [round(v, 2) for v in p] if module.regression else p,
            }
        )
    return rows


@dataclass
class Plan:
    """What the checks decided before anything is built: the task, the network's keywords, the
    number of processes, the run folder, the checkpoint a resume starts from, and whether this
    process prints progress."""

    task: Any
    net_kwargs: dict[str, Any]
    world: int
    out_dir: Path
    ckpt_path: Path | None
    progress: bool


@dataclass
class Parts:
    """The built run: data, network, LightningModule, trainer and the callbacks read at the end."""

    dm: Any
    chance: dict[str, float]
    module: Any
    trainer: Any
    loggers: list[Any]
    target: Any
    guard: Any
    timer: Any


def plan(cfg: DictConfig) -> Plan:
    """Every check on the config and the run folder, then the banner; nothing written yet."""
    from src.hardware import is_primary

    task, net_kwargs, world = validate(cfg)
    out_dir = Path(cfg.paths.output_dir)
    check_output_dir("paths.output_dir", out_dir)
    # Ranks > 0 of a DDP run start after rank 0 has created the folder; it is rank 0's to check.
    holds_run = (out_dir / "metrics.json").exists() or (out_dir / "checkpoints").exists()
    if cfg.ckpt_path is None and holds_run and is_primary():
        raise ConfigError(
            f"paths.output_dir={out_dir} already holds a run; pick a new folder (runs are never overwritten)."
        )
    ckpt_path = check_ckpt_path(cfg.ckpt_path, out_dir)
    progress = cfg.get("progress", True) and is_primary()
    if progress:  # before the slow imports: the folder and what is trained, at once
        print(banner(cfg, out_dir, net_kwargs, ckpt_path), flush=True)
    return Plan(task, net_kwargs, world, out_dir, ckpt_path, progress)


def build_parts(cfg: DictConfig, p: Plan) -> Parts:
    """Data, network, optimizer, LightningModule, callbacks, loggers and trainer; a constructor
    that refuses its arguments is one sentence (`build`), still before anything is written."""
    quiet_framework()
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from src.callbacks import Progress, StepTimer
    from src.datamodules.generate import make_split
    from src.datamodules.sequence_datamodule import SequenceDataModule
    from src.lit_models.sequence_module import SequenceModule, chance_levels
    from src.reliability import AtomicCheckpointIO, RunGuard

    task = p.task
    if cfg.hardware.get("threads"):
        torch.set_num_threads(cfg.hardware.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build("data", lambda: SequenceDataModule(task, seed=cfg.seed, **cfg.data))  # `+data.<typo>=...`
    _, y_test, m_test = make_split(task, cfg.data.test_seed, cfg.data.test_size)
    chance = chance_levels(task, y_test, m_test)
    net = build("model", lambda: build_net(task, p.net_kwargs))
    optimizer = build("optim.optimizer", lambda: instantiate(cfg.optim.optimizer))
    scheduler = (
        build("optim.scheduler", lambda: instantiate(cfg.optim.scheduler)) if cfg.optim.get("scheduler") else None
    )
    # _partial_ factories accept any keyword until called: try them on a stand-in parameter now
    probe = build("optim.optimizer", lambda: optimizer([torch.nn.Parameter(torch.zeros(1))]))
    if scheduler is not None:
        build("optim.scheduler", lambda: scheduler(probe))
    module = SequenceModule(
        net,
        task,
        optimizer=optimizer,
        scheduler=scheduler,
        grad_clip=cfg.optim.get("grad_clip"),
        grad_clip_value=cfg.optim.get("grad_clip_value"),
        tbptt=p.net_kwargs.get("tbptt", 1),
        log_interval=cfg.trainer.log_every_n_steps,
        chance=chance,
    )
    timer = StepTimer()
    callbacks = [
        build(f"callbacks.{k}", lambda c=c: instantiate(c)) for k, c in (cfg.get("callbacks") or {}).items() if c
    ] + [timer, *([Progress(cfg.optimized_metric)] if p.progress else [])]
    loggers = [build(f"logger.{k}", lambda c=c: instantiate(c)) for k, c in (cfg.get("logger") or {}).items() if c]
    target = next((c for c in callbacks if c.__class__.__name__ == "TargetReached"), None)
    guard = RunGuard(p.out_dir / "checkpoints")  # always on: NaN stop, clean Ctrl-C, RNG in checkpoints
    hw = cfg.hardware
    trainer = build(
        "trainer",
        lambda: pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            accelerator=hw.accelerator,
            devices=hw.devices,
            num_nodes=hw.num_nodes,
            strategy=build_strategy(hw),
            precision=hw.precision,
            callbacks=[*callbacks, guard],
            plugins=[AtomicCheckpointIO()],
            logger=loggers or False,
            default_root_dir=str(p.out_dir),
            check_val_every_n_epoch=None,
            reload_dataloaders_every_n_epochs=1,
            num_sanity_val_steps=0,
            enable_checkpointing=any(c.__class__.__name__ == "ModelCheckpoint" for c in callbacks),
        ),
    )
    signals.disown(trainer)  # SIGINT/SIGTERM stay with src.signals
    return Parts(dm, chance, module, trainer, loggers, target, guard, timer)


def open_run(cfg: DictConfig, p: Plan, parts: Parts) -> None:
    """Where the run starts (fresh, a resume, or init_from's weights: checked against the
    checkpoint's own record), then the first writes: the folder, train.log, the run's identity and
    a resume's entry in <run>/.hydra/resumes.yaml."""
    from src.hardware import is_primary
    from src.launch import note_resume

    guard = parts.guard
    identity, guard.start_step, warnings = start_point(cfg, p.ckpt_path, parts.module, p.out_dir)
    guard.identity = identity  # every checkpoint says which run, trained on what
    for lg in parts.loggers if p.ckpt_path is not None else ():
        if hasattr(lg, "resume_at"):
            lg.resume_at(guard.start_step)
    p.out_dir.mkdir(parents=True, exist_ok=True)  # only now: bad input above leaves nothing behind
    keep_log(p.out_dir)
    if is_primary():
        keep_run_id(p.out_dir, identity)
        for warning in warnings:  # a checkpoint without a checksum
            print(warning, file=sys.stderr)
    note_resume(p.out_dir)  # a resume that passed every check


def fit(parts: Parts, p: Plan) -> dict[str, Any]:
    """Train until the target holds or the budget ends; what the fit leaves for the record."""
    trainer, guard = parts.trainer, parts.guard
    t_fit = time.perf_counter()
    trainer.fit(parts.module, datamodule=parts.dm, ckpt_path=p.ckpt_path)
    fit_s = time.perf_counter() - t_fit
    signals.check()  # a signal during the final validation: last.ckpt is the end of the fit
    return {
        "t_fit": t_fit,
        "fit_s": fit_s,
        "val": guard.fit_metrics(trainer),  # a resume at the budget's end: the run's record
        "val_step": guard.val_step,
        "stop": stopped_by(trainer, parts.target),  # before test: testing best.ckpt restores the callbacks' states
    }


def evaluate(cfg: DictConfig, p: Plan, parts: Parts, fitted: dict[str, Any], t_start: float) -> tuple[dict, list]:
    """Test the best checkpoint (selected on validation loss, never on test data) when there is
    one, print sample windows, probe the network once (diagnostics), and assemble metrics.json."""
    import torch

    trainer, module, target = parts.trainer, parts.module, parts.target
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=parts.dm, ckpt_path=best or None, verbose=False)
    # the module sends evaluation metrics to the loggers itself (src/loggers.py: steps), so
    # trainer.test returns none: read them where callbacks do
    tested = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    rows = sample_table(module, parts.dm, cfg.samples)
    diagnostics, diagnostics_s = None, None
    if cfg.get("diagnostics", True) and trainer.is_global_zero:  # off the hot path: once, on the test weights
        from src.diagnostics import diagnose

        t_diag = time.perf_counter()
        diagnostics = diagnose(module.net, p.task, *parts.dm.test_set, module.loss)
        diagnostics_s = time.perf_counter() - t_diag
    metrics: dict[str, Any] = {
        "status": "completed",
        "task": p.task.name,
        "cell": p.net_kwargs["cell"],
        "topology": p.net_kwargs["topology"],
        "seed": cfg.seed,
        **{k: float(v) for k, v in sorted(tested.items())},
        **fitted["val"],
        "chance": parts.chance,
        "target": target.summary() if target else {"reached": False, "monitor": None, "target": None, "best": None},
        "steps": trainer.global_step,
        "stopped_by": fitted["stop"],
        "batches": trainer.fit_loop.epoch_loop.batch_progress.total.ready,
        "epochs": trainer.current_epoch,
        "params": sum(q.numel() for q in module.net.parameters()),
        "fit_time_s": fitted["fit_s"],
        "wall_time_s": time.perf_counter() - t_start,
        "startup_s": fitted["t_fit"] - T_PROCESS,
        "world_size": p.world,
        "tested_checkpoint": Path(best).name if best else "final weights",
        "weights": weights_used(trainer, fitted["val_step"], p.out_dir),
        **parts.timer.summary(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),  # a parallel launcher's share of the cores
        **({"diagnostics": diagnostics, "diagnostics_s": diagnostics_s} if diagnostics else {}),
    }
    signals.check()  # a signal during test
    return metrics, rows


def record(cfg: DictConfig, p: Plan, parts: Parts, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Rank 0 writes the loggers' end-of-run records, then metrics.json (the run's verdict), then
    prints the summary."""
    if not parts.trainer.is_global_zero:
        return
    from src.loggers import record_run

    record_run(parts.loggers, cfg, metrics, rows)  # hyperparameters, final metrics, samples
    signals.check()  # a signal while the loggers wrote: not recorded `completed`
    write_json(p.out_dir / "metrics.json", metrics)
    print_summary(metrics, rows, p.out_dir)


@logged_run  # what train prints also goes to <run>/train.log
def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and test one run; return (metrics, objects). Raises ConfigError on bad input, before
    anything is written. The stages: plan (checks), build, open the run folder, fit, test, record."""
    t_start = time.perf_counter()
    p = plan(cfg)
    parts = build_parts(cfg, p)
    open_run(cfg, p, parts)
    # Every stop from here on (a signal in any phase, a failed write, a NaN) is recorded in
    # metrics.json by stop_report; a second signal (SignalStop) lands here from wherever it hit.
    try:
        signals.check()  # a signal during start-up
        fitted = fit(parts, p)
        metrics, rows = evaluate(cfg, p, parts, fitted, t_start)
        record(cfg, p, parts, metrics, rows)
    except BaseException as err:
        from src.reliability import stop_report

        stopped = stop_report(err, parts.trainer, parts.guard, p.out_dir)
        if stopped is err:
            raise
        raise stopped from err
    return metrics, {"trainer": parts.trainer, "module": parts.module, "datamodule": parts.dm, "cfg": cfg}


def record_failure(cfg: DictConfig, err: BaseException) -> bool:
    """Record a run that crashed (in fit, validation, test or the end-of-run writing) as `failed`
    with the error in metrics.json, unless it already says why it stopped. In a multirun return
    True so the sweep goes on; in a single run return False (the caller exits non-zero). Bad input
    (ConfigError) in a single run writes nothing: its folder is removed."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    out_dir = Path(cfg.paths.output_dir)
    if multirun:
        out_dir.mkdir(parents=True, exist_ok=True)
    elif isinstance(err, ConfigError) or not out_dir.is_dir():
        return False
    from src.checkpoints import run_status
    from src.hardware import is_primary

    # the run's record is rank 0's (as every other write of it): a failing rank > 0 says it on stderr
    if is_primary() and run_status(out_dir) not in ("failed", "interrupted"):
        try:
            write_json(out_dir / "metrics.json", {"status": "failed", "error": f"{type(err).__name__}: {err}"})
        except OSError:  # a full or read-only disk: stderr still says it
            pass
    if multirun:
        print(f"job failed ({type(err).__name__}: {err}); the sweep goes on", file=sys.stderr)
    return multirun
