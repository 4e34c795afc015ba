"""Predict with a trained run: `python predict.py RUN_FOLDER VALUE [VALUE ...]`.

Loads the run's saved config (`RUN_FOLDER/.hydra/config.yaml`) and checkpoint
(`checkpoints/best.ckpt`, else `last.ckpt`), rebuilds the network exactly as train.py did, reads the
typed values as one window (oldest first) and prints expected vs predicted where the task defines
an expected value. Examples:

    python predict.py outputs/runs/<folder> 50 60 70        # arithmetic: expects 80
    python predict.py outputs/runs/<folder> 4 8 15 16 23    # echo_lag (lag 1): expects 16
    python predict.py outputs/runs/<folder> 0 1 1 0         # invert_bits: expects 1 0 0 1

Window tasks read exactly `task.context` values (1 to `task.context` with task.pad_start=true: a
shorter window is the start of a sequence, left-padded); label-framing tasks (a target at every step,
stateful ones included: they start from a reset state) read any number of values.
Bad input (no such folder, a damaged config, no checkpoint or one with non-finite weights, a run
that failed, wrong window length, a value outside the task's range) is answered with one sentence
on stderr and exit status 2. A run that did not complete (interrupted, or still running) is used
with a warning on stderr that says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.datamodules.tasks import Task
from src.hardware import cores
from src.run_config import validate
from src.schema import ConfigError

CHECKPOINTS = ("best.ckpt", "last.ckpt")
ONE_CPU = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true"}


def load_run(run_dir: Path) -> tuple[Task, Any, Path]:
    """(task, network with the checkpoint's weights in eval mode, checkpoint path) of a run folder."""
    task, net_kwargs = load_task(run_dir)
    net, ckpt = load_net(run_dir, task, net_kwargs)
    return task, net, ckpt


def load_task(run_dir: Path) -> tuple[Task, dict[str, Any]]:
    """The run's task and network arguments from its saved config, checked as train.py did."""
    cfg = run_config(run_dir)
    try:
        task, net_kwargs, _ = validate(cfg, memory=False)
    except ConfigError as err:
        raise ConfigError(f"{run_dir / '.hydra' / 'config.yaml'} holds a config train.py would refuse: {err}") from None
    return task, net_kwargs


def run_config(run_dir: Path) -> DictConfig:
    """A run folder's saved config, as this process runs it: on one CPU device with at most its
    cores as threads (not the GPU or the DDP ranks it trained on), the run folder as its paths."""
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist; pass a folder that train.py wrote (outputs/runs/...).")
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} has no .hydra/config.yaml, so it is not a run folder written by train.py.")
    try:
        cfg = OmegaConf.load(cfg_path)
        threads = cfg.hardware.get("threads")
        cfg.hardware = {**ONE_CPU, "threads": None if threads is None else min(threads, cores())}
        cfg.paths.output_dir = str(run_dir)  # Hydra's run folder when it trained
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # not YAML, not a mapping, no hardware or paths node
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else ""
        raise ConfigError(
            f"{cfg_path} cannot be read as a run config ({type(err).__name__}: {first}); it is damaged or not "
            "written by train.py."
        ) from None
    return cfg


def load_net(run_dir: Path, task: Task, net_kwargs: dict[str, Any]) -> tuple[Any, Path]:
    """The network with the run's checkpoint loaded (best.ckpt, else last.ckpt), in eval mode; a
    run that failed or a checkpoint with non-finite weights is refused, an unfinished run warned of."""
    ckpt = next((run_dir / "checkpoints" / n for n in CHECKPOINTS if (run_dir / "checkpoints" / n).is_file()), None)
    if ckpt is None:
        raise ConfigError(
            f"{run_dir} has no checkpoints/best.ckpt or last.ckpt; train with the default callbacks "
            "(callbacks=default) to save one."
        )
    status = run_status(run_dir)

    import torch

    from src.checkpoints import read_weights, unchecked
    from src.run import build_net

    net = build_net(task, net_kwargs)
    try:
        state, summed = read_weights(ckpt)  # a damaged file or another file's checksum: refused there
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    except ConfigError:
        raise
    except Exception as err:  # a truncated file or one from a different model config
        raise ConfigError(f"checkpoint {ckpt} cannot be loaded into the run's model ({type(err).__name__}).") from err
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise ConfigError(f"checkpoint {ckpt} holds non-finite (NaN or inf) weights, so its predictions mean nothing.")
    if status not in (None, "completed", "interrupted"):
        raise ConfigError(
            f"run {run_dir} {status} ({status_reason(run_dir)}), so its checkpoint is not a trained model; "
            "resume it with ckpt_path or train it again."
        )
    if status != "completed":
        state = "was interrupted" if status == "interrupted" else "has no metrics.json (still running, or killed)"
        print(f"warning: run {run_dir} {state}; predicting with {ckpt.name} as it was saved.", file=sys.stderr)
    if not summed:
        print(unchecked(ckpt), file=sys.stderr)
    return net.eval(), ckpt


def run_status(run_dir: Path) -> str | None:
    """The status metrics.json records, 'unreadable' for a damaged one, None without one."""
    try:
        status = json.loads((run_dir / "metrics.json").read_text()).get("status")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return "unreadable"
    return str(status)


def status_reason(run_dir: Path) -> str:
    try:
        m = json.loads((run_dir / "metrics.json").read_text())
        return str(m.get("error") or m.get("reason") or f"status {m.get('status')!r}").rstrip(".")
    except (OSError, ValueError, AttributeError):
        return "its metrics.json cannot be read"


def parse_values(task: Task, words: list[str]) -> list[float] | list[int]:
    """The typed window, checked against the task (`task.parse`: src/datamodules/tasks/base.py, or its family)."""
    return task.parse(words)


def predict(task: Task, net: Any, values: list) -> dict[str, list]:
    """{'input', 'expected', 'predicted'} for one window x (1, T); expected entries are None where the
    task defines no target (label steps t < lag; arithmetic input that is not a step-`step` progression)."""
    import torch

    floats = any(not isinstance(v, int) for v in values)  # floats, or a family's feature vectors
    x = torch.tensor([values], dtype=torch.float32 if floats else torch.long)
    if task.pad_start:  # the start of a sequence: the missing observations are the pad symbol
        x = torch.cat([x.new_full((1, task.context - len(values)), task.vocab), x], dim=1)
    y, mask = task.targets(x)
    expected = [v if m else None for v, m in zip(y[0].tolist(), mask[0].tolist(), strict=True)]
    with torch.no_grad():  # label framing: a target at every typed step, however many were typed
        out, _ = net(x, out_len=x.shape[1] if task.framing == "label" else None)
    if task.objective == "regression":
        predicted = [round(v, 2) for v in (out.squeeze(-1) * task.scale)[0].tolist()]
    else:
        predicted = out.argmax(-1)[0].tolist()
    return {"input": values, "expected": expected, "predicted": predicted}


def report(task: Task, result: dict[str, list]) -> str:
    """Expected vs predicted (label framing: one column per step), and how many targets the rounded
    prediction hits."""
    exp, pred = result["expected"], result["predicted"]
    cells = {k: ["-" if v is None else str(v) for v in result[k]] for k in ("input", "expected", "predicted")}
    if task.framing == "label":
        width = max(len(c) for row in cells.values() for c in row)
        lines = [f"  {k:<10}" + " ".join(c.rjust(width) for c in row) for k, row in cells.items()]
    else:
        lines = [f"  {k:<10}" + ", ".join(row) for k, row in cells.items()]
    scored = [(e, p) for e, p in zip(exp, pred, strict=True) if e is not None]
    if scored and not task.is_integer_valued:  # a continuous target (adding): how far off, not hits
        lines.append(f"  mean absolute error {sum(abs(p - e) for e, p in scored) / len(scored):.3g}")
    elif scored:
        hits = sum(round(p) == e for e, p in scored)
        lines.append(f"  {hits}/{len(scored)} predictions match the expected values (rounded)")
    elif task.unscored():
        lines.append(f"  no expected value: {task.unscored()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Predict with a trained run for a window typed on the command line.",
        epilog="example: python predict.py outputs/runs/<folder> 50 60 70",
    )
    parser.add_argument("run", type=Path, help="a run folder written by train.py")
    parser.add_argument("values", nargs="+", help="the window, oldest value first")
    args = parser.parse_args(argv)
    try:
        task, net_kwargs = load_task(args.run)
        values = parse_values(task, args.values)  # cheap checks first: no checkpoint is read for a typo
        net, ckpt = load_net(args.run, task, net_kwargs)
        result = predict(task, net, values)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"run {args.run} (task {task.name}, checkpoint {ckpt.name})")
    print(report(task, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
