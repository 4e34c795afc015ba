"""train(cfg): validate, build, fit, test, and write the run folder. No Hydra decorator here, so
tests and sweeps call it in-process with a config composed by Hydra's compose API."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, check_data, check_model, make_task

T_PROCESS = time.perf_counter()  # first import of this module ~ process start-up end


def quiet_framework() -> None:
    """Drop Lightning's start-up chatter and warnings that do not apply to this design: our
    IterableDataset defines __len__ and shards by worker itself; evaluation sets are pre-built
    batches on the device, so 'few workers' does not apply."""
    import logging
    import warnings

    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    for pattern in (".*IterableDataset.*has `__len__` defined.*", ".*does not have many workers.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def check_hardware(hw: Any) -> int:
    """Validate the `hardware` node; return the number of processes (world size)."""
    h = dict(hw)
    allowed = ("cpu", "gpu")
    if h.get("accelerator") not in allowed:
        raise ConfigError(f"hardware.accelerator={h.get('accelerator')!r} is not allowed; choose one of: cpu, gpu.")
    for key in ("devices", "num_nodes"):
        v = h.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"hardware.{key}={v!r} is not allowed; it must be an integer >= 1.")
    if h["accelerator"] == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "hardware=gpu needs a CUDA device, but torch.cuda.is_available() is False on this machine; "
                "use hardware=cpu."
            )
        if h["devices"] > torch.cuda.device_count():
            raise ConfigError(
                f"hardware.devices={h['devices']} exceeds the {torch.cuda.device_count()} CUDA devices here."
            )
    threads = h.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"hardware.threads={threads!r} is not allowed; use null or an integer >= 1.")
    return h["devices"] * h["num_nodes"]


def validate(cfg: DictConfig) -> tuple[Any, dict[str, Any], int]:
    """Every check that can fail on user input, before anything is built."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    task = make_task(OmegaConf.to_container(cfg.task, resolve=True), tbptt=model.get("tbptt", 1))
    net_kwargs = check_model(model, task)
    world = check_hardware(cfg.hardware)
    check_data(OmegaConf.to_container(cfg.data, resolve=True), world)
    if task.stateful and (cfg.data.batch_size // world) < 1:
        raise ConfigError("data.batch_size must give every process at least one stream.")
    return task, net_kwargs, world


def build_net(task: Any, net_kwargs: dict[str, Any]):
    """Instantiate the network from the model node, adding the shapes the task implies."""
    from hydra.utils import instantiate

    kwargs = {k: v for k, v in net_kwargs.items() if k != "tbptt"}
    n_out = 1 if task.objective == "regression" else task.vocab
    return instantiate(
        kwargs, vocab=task.vocab, encoding=task.encoding, n_out=n_out, out_len=task.out_len, scale=task.scale
    )


def sample_table(module: Any, dm: Any, n: int) -> list[dict[str, Any]]:
    """Expected vs predicted on the first n test windows."""
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


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def print_summary(metrics: dict[str, Any], rows: list[dict[str, Any]], out_dir: Path) -> None:
    lines = ["", "Sample test windows (input -> expected | predicted):"]
    for r in rows:
        ok = "ok " if [round(v) for v in r["predicted"]] == r["expected"] else "ERR"
        lines.append(f"  {ok} {r['input']} -> {r['expected']} | {r['predicted']}")
    lines.append("")
    lines.append(f"  {'metric':<12}{'test':>10}{'val':>10}{'chance':>10}")
    for name in ("loss", "acc", "exact", "mse", "mae", "pred_mean", "pred_std"):
        if f"test/{name}" in metrics:
            test, val = metrics[f"test/{name}"], metrics.get(f"val/{name}")
            chance = metrics["chance"].get(name)
            lines.append(
                f"  {name:<12}{_fmt(test):>10}{_fmt(val):>10}{_fmt(chance) if chance is not None else '-':>10}"
            )
    tgt = metrics["target"]
    reached = (
        f"reached at step {tgt['step']} after {tgt['seconds']:.2f} s"
        if tgt["reached"]
        else f"not reached (best {tgt['monitor']} = {_fmt(tgt['best'])})"
    )
    op = "<=" if tgt.get("mode") == "min" else ">="
    lines.append(f"  target {tgt['monitor']} {op} {tgt['target']}: {reached}")
    lines.append(f"  steps {metrics['steps']}, params {metrics['params']}, wall {metrics['wall_time_s']:.1f} s")
    lines.append(f"Run folder: {out_dir}")
    print("\n".join(lines), flush=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated metrics.json."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and test one run; return (metrics, objects). Raises ConfigError on bad input."""
    t_start = time.perf_counter()
    task, net_kwargs, world = validate(cfg)
    out_dir = Path(cfg.paths.output_dir)
    if cfg.ckpt_path is None and ((out_dir / "metrics.json").exists() or (out_dir / "checkpoints").exists()):
        raise ConfigError(
            f"paths.output_dir={out_dir} already holds a run; pick a new folder (runs are never overwritten)."
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    quiet_framework()
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from src.datamodules.generate import make_split
    from src.datamodules.sequence_datamodule import SequenceDataModule
    from src.lit_models.sequence_module import SequenceModule, chance_levels

    if cfg.hardware.get("threads"):
        torch.set_num_threads(cfg.hardware.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = SequenceDataModule(task, seed=cfg.seed, **cfg.data)
    _, y_test, m_test = make_split(task, cfg.data.test_seed, cfg.data.test_size)
    chance = chance_levels(task, y_test, m_test)
    net = build_net(task, net_kwargs)
    module = SequenceModule(
        net,
        task,
        optimizer=instantiate(cfg.optim.optimizer),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        grad_clip=cfg.optim.get("grad_clip"),
        tbptt=net_kwargs.get("tbptt", 1),
        log_interval=cfg.trainer.log_every_n_steps,
        chance=chance,
    )

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    target = next((c for c in callbacks if c.__class__.__name__ == "TargetReached"), None)
    hw = cfg.hardware
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        accelerator=hw.accelerator,
        devices=hw.devices,
        num_nodes=hw.num_nodes,
        strategy=hw.strategy,
        precision=hw.precision,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(out_dir),
        check_val_every_n_epoch=None,
        reload_dataloaders_every_n_epochs=1,
        num_sanity_val_steps=0,
        enable_checkpointing=any(c.__class__.__name__ == "ModelCheckpoint" for c in callbacks),
    )
    t_fit = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)
    fit_s = time.perf_counter() - t_fit
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    rows = sample_table(module, dm, cfg.samples)

    metrics: dict[str, Any] = {
        "status": "completed",
        "task": task.name,
        "cell": net_kwargs["cell"],
        "topology": net_kwargs["topology"],
        "seed": cfg.seed,
        **{k: float(v) for k, v in sorted(test.items())},
        **val,
        "chance": chance,
        "target": target.summary() if target else {"reached": False, "monitor": None, "target": None, "best": None},
        "steps": trainer.global_step,
        "batches": trainer.fit_loop.epoch_loop.batch_progress.total.ready,
        "epochs": trainer.current_epoch,
        "params": sum(p.numel() for p in net.parameters()),
        "fit_time_s": fit_s,
        "wall_time_s": time.perf_counter() - t_start,
        "startup_s": t_fit - T_PROCESS,
        "world_size": world,
    }
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", metrics)
        for lg in loggers:
            if hasattr(lg, "experiment") and hasattr(lg.experiment, "add_text"):
                flat = {k: v for k, v in _flatten(OmegaConf.to_container(cfg, resolve=True)).items()}
                final = {k: v for k, v in metrics.items() if isinstance(v, float) and "/" in k}
                lg.log_hyperparams(flat, metrics=final)
                table = "| input | expected | predicted |\n|---|---|---|\n" + "\n".join(
                    f"| {r['input']} | {r['expected']} | {r['predicted']} |" for r in rows
                )
                lg.experiment.add_text("samples/test", table, trainer.global_step)
                lg.finalize("success")
        print_summary(metrics, rows, out_dir)
    return metrics, {"trainer": trainer, "module": module, "datamodule": dm, "cfg": cfg}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = "null" if v is None else v
        else:
            out[key] = str(v)
    return out


def record_failure(cfg: DictConfig, err: BaseException) -> bool:
    """Mark a failed job. In a multirun, write metrics.json with status `failed` and return True so
    the sweep goes on; in a single run return False (the caller exits non-zero)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun:
        return False
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "metrics.json").exists():
        write_json(out_dir / "metrics.json", {"status": "failed", "error": f"{type(err).__name__}: {err}"})
    print(f"job failed ({type(err).__name__}: {err}); the sweep goes on", file=sys.stderr)
    return True
