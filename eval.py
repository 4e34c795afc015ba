"""Evaluate a trained run on fresh data, as trained or under a changed task:

    python eval.py RUN_FOLDER                          # the run's own task, a fresh test set
    python eval.py RUN_FOLDER task.lag=2 task.context=8
    python eval.py RUN_FOLDER task.seq_len=200 data.test_seed=7 --out evals/lag2

This tells a memorised delay line from genuine recall: a network trained at lag k, evaluated at
other lags and lengths. The run's saved config (`.hydra/config.yaml`) is the starting point; the
overrides may change `task.*` keys and the evaluation set (`data.test_size`, `data.test_seed`,
`data.eval_batch_size`), `samples` and `hardware.threads`; the vocabulary and encoding stay (they
fix the weights' sizes). The changed config goes through train.py's checks (`src.run_config.validate`,
the memory estimate included), so a value train.py refuses is refused here, in the same sentence. The test set is drawn from the run's `data.test_seed` unless changed, so an
evaluation without overrides reproduces the run's own test result, which checks the loading;
`data.test_seed=S` draws another one. The weights are the run's `best.ckpt`
(else `last.ckpt`), as predict.py loads them. Results go to a new folder beside the run,
`<run>.eval/<time>_<overrides>/` (config.yaml, metrics.json, eval.log); the run folder is only read.
Every metric is printed with its chance level and beside the run's own test result.

Exit status: 0 done, 2 bad input (one sentence on stderr; nothing written).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.schema import ConfigError

# what an evaluation may change: the task, the evaluation set and how the process runs
EVAL_DATA_KEYS = ("data.test_size", "data.test_seed", "data.eval_batch_size")
EVAL_OTHER_KEYS = ("samples", "hardware.threads")
FIXED_TASK_KEYS = ("task.name", "task.objective", "task.vocab", "task.encoding", "task.stream", "task.transform",
                   "task.pad_start")  # fmt: skip
METRICS = ("loss", "acc", "exact", "mse", "mae", "pred_mean", "pred_std")


def parse_overrides(words: list[str]) -> dict[str, Any]:
    """`key=value` words as {key: value} (YAML values, as Hydra reads them), keys checked."""
    out: dict[str, Any] = {}
    for word in words:
        key, eq, _ = word.partition("=")
        if not eq or not key:
            raise ConfigError(f"{word!r} is not an override; write key=value, e.g. task.lag=2.")
        if not (key.startswith("task.") or key in EVAL_DATA_KEYS + EVAL_OTHER_KEYS):
            allowed = ", ".join(("task.<key>", *EVAL_DATA_KEYS, *EVAL_OTHER_KEYS))
            raise ConfigError(
                f"{key} cannot be changed by eval.py (the weights fix the model and the training settings); "
                f"it may change {allowed}."
            )
        if key in FIXED_TASK_KEYS:
            raise ConfigError(
                f"{key} cannot be changed by eval.py: the weights were trained for the run's own task, and its "
                "vocabulary and encoding fix their input and output sizes; change lag, context, seq_len, out_len "
                "or the evaluation set instead."
            )
        out[key] = OmegaConf.to_container(OmegaConf.from_dotlist([word]), resolve=True)
        for part in key.split("."):
            out[key] = out[key][part]
    return out


def run_of_ckpt_path(run: Path) -> Path:
    """`ckpt_path=<run>/checkpoints/best.ckpt` (lightning-hydra-template's eval.py habit) names the
    run whose checkpoint eval.py evaluates: its best.ckpt, else last.ckpt."""
    word = str(run)
    if not word.startswith("ckpt_path="):
        return run
    ckpt = Path(word.split("=", 1)[1])
    folder = ckpt.parent.parent
    used = next((p for p in (ckpt.parent / "best.ckpt", ckpt.parent / "last.ckpt") if p.is_file()), None)
    if ckpt.parent.name != "checkpoints" or used is None or ckpt.resolve() != used.resolve():
        raise ConfigError(
            f"{word}: eval.py evaluates a run folder's checkpoints/best.ckpt (else last.ckpt); pass the run folder, "
            f"python eval.py {folder if ckpt.parent.name == 'checkpoints' else '<run folder>'} [task.<key>=VALUE ...]."
        )
    return folder


def eval_config(run_dir: Path, overrides: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """The run's saved config with the overrides applied, checked as train.py checks a run (the
    memory estimate included), for this process: one CPU device, the run folder as its paths."""
    from predict import load_task, run_config
    from src.run_config import validate

    load_task(run_dir)  # one sentence for a missing or damaged run folder
    cfg = run_config(run_dir)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    task, net_kwargs, _ = validate(cfg)
    return cfg, task, net_kwargs


def out_folder(run_dir: Path, overrides: dict[str, Any], out: Path | None) -> Path:
    if out is None:
        slug = "_".join(f"{k.removeprefix('task.')}={v}" for k, v in overrides.items()) or "as_trained"
        slug = re.sub(r"[^A-Za-z0-9_.=,-]", "-", slug)[:150]
        out = run_dir.parent / f"{run_dir.name}.eval" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{slug}"
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} already holds files; pick a new folder (nothing is overwritten).")
    return out


def evaluate(
    cfg: Any, task: Any, net_kwargs: dict[str, Any], run_dir: Path, samples: int
) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Test metrics of the run's weights on the (changed) task's fresh test set, with chance levels."""
    from predict import load_net

    try:
        net, ckpt = load_net(run_dir, task, net_kwargs)
    except ConfigError as err:
        if "cannot be loaded into the run's model" in str(err):  # e.g. a topology whose sizes follow out_len
            raise ConfigError(
                f"the run's weights do not fit the changed task: topology {net_kwargs['topology']} sizes its "
                "layers by the task's window, so keep the keys that set it (out_len, context) as trained."
            ) from None
        raise

    from src.run import quiet_framework

    quiet_framework()
    import pytorch_lightning as pl
    import torch

    from src.datamodules.generate import make_split
    from src.datamodules.sequence_datamodule import SequenceDataModule
    from src.lit_models.sequence_module import SequenceModule, chance_levels
    from src.run import sample_table

    if cfg.hardware.get("threads"):
        torch.set_num_threads(cfg.hardware.threads)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    dm = SequenceDataModule(task, seed=cfg.seed, **{**data, "val_size": 1})
    _, y_test, m_test = make_split(task, data["test_seed"], data["test_size"])
    chance = chance_levels(task, y_test, m_test)
    module = SequenceModule(net, task, optimizer=None, chance=chance)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=None,
    )
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
    from src.diagnostics import diagnose

    diagnostics = diagnose(net, task, *dm.test_set, module.loss)
    return {**metrics, "chance": chance, **diagnostics}, sample_table(module, dm, samples), ckpt


def trained_result(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def summary(metrics: dict[str, Any], trained: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    from src.terminal import diagnostics_lines, fmt, sample_ok

    lines = ["Sample windows (input -> expected | predicted):"] if rows else []
    lines += [f"  {'ok ' if sample_ok(r) else 'ERR'} {r['input']} -> {r['expected']} | {r['predicted']}" for r in rows]
    base = "mean pred" if "test/mse" in metrics else "chance"
    lines += ["", f"  {'metric':<12}{'eval':>12}{'run test':>12}{base:>12}"]
    for name in METRICS:
        if f"test/{name}" in metrics:
            old = trained.get(f"test/{name}")
            chance = metrics["chance"].get(name)
            lines.append(
                f"  {name:<12}{fmt(metrics[f'test/{name}']):>12}{fmt(old) if old is not None else '-':>12}"
                f"{fmt(chance) if chance is not None else '-':>12}"
            )
    lines += diagnostics_lines(metrics)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Evaluate a trained run on fresh data, as trained or under changed task settings.",
        epilog="example: python eval.py outputs/runs/<folder> task.lag=2 task.context=8",
    )
    parser.add_argument("run", type=Path, help="a run folder written by train.py")
    parser.add_argument("overrides", nargs="*", help="task.<key>=VALUE, data.test_size=N, data.test_seed=S, ...")
    parser.add_argument("--out", type=Path, default=None, help="the folder to write (default: beside the run)")
    args = parser.parse_args(argv)
    try:
        args.run = run_of_ckpt_path(args.run)
        overrides = parse_overrides(args.overrides)
        cfg, task, net_kwargs = eval_config(args.run, overrides)
        out = out_folder(args.run, overrides, args.out)
        metrics, rows, ckpt = evaluate(cfg, task, net_kwargs, args.run, cfg.samples)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    trained = trained_result(args.run)
    changed = {
        k: {"run": OmegaConf.select(OmegaConf.load(args.run / ".hydra/config.yaml"), k), "eval": v}
        for k, v in overrides.items()
    }
    record = {
        "status": "completed",
        "run": str(args.run.resolve()),
        "checkpoint": str(ckpt.resolve()),
        "task": cfg.task.name,
        "overrides": changed,
        **{k: v for k, v in metrics.items()},
        "run_test": {k: v for k, v in trained.items() if k.startswith("test/")},
        "samples": rows,
    }
    text = f"run {args.run} ({ckpt.name}), task {cfg.task.name}" + (
        "; changed: " + ", ".join(f"{k} {c['run']} -> {c['eval']}" for k, c in changed.items())
        if changed
        else "; as trained, fresh test set"
    )
    text += "\n" + summary(metrics, trained, rows) + f"\nEval folder: {out}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    from src.files import write_json

    write_json(out / "metrics.json", record)
    (out / "eval.log").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
