"""What a run shows on the terminal, and `<run>/train.log` holding the same lines.

- `banner`: the run folder and what is trained, printed before the slow imports of a run.
- `logged_run` / `keep_log`: everything `train()` prints (ours, warnings, Hydra's and Lightning's
  log records) goes to the terminal and is appended to `<run>/train.log`.

Imported before a run's heavy imports, so it stays light: no torch, no Lightning.
The per-validation progress lines are `src.callbacks.Progress`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from src.schema import ConfigError

LOG_NAME = "train.log"


def fmt(v: Any) -> str:
    """A metric value as printed: 4 significant digits for floats."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def target_text(monitor: str, target: float | None, mode: str, consecutive: int) -> str:
    op = "<=" if mode == "min" else ">="
    rows = "validation" if consecutive == 1 else f"{consecutive} validations in a row"
    return f"{monitor} {op} {target} for {rows}"


# -- the start banner ----------------------------------------------------------------------------
TASK_KEYS = ("vocab", "context", "lag", "out_len", "encoding", "objective")


def banner(cfg: DictConfig, out_dir: Path, net_kwargs: dict[str, Any], ckpt_path: Path | None) -> str:
    """Which folder, what is trained, with which budget and stop; on resume, from which checkpoint."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    data = cfg.data
    lines = [f"run folder: {out_dir.absolute()}"]
    if ckpt_path is not None:
        same = Path(ckpt_path).absolute().parent.parent == out_dir.absolute()
        where = "this run" if same else f"the run in {Path(ckpt_path).absolute().parent.parent}"
        lines.append(f"resuming {where} from {ckpt_path} (the step it continues from is printed when training starts)")
    details = ", ".join(f"{k} {task[k]}" for k in TASK_KEYS if k in task)
    stateful = ", stateful" if task.get("stateful") else ""
    lines.append(f"task: {task.get('name')} ({details}{stateful})")
    layers = net_kwargs.get("layers", 1)
    lines.append(
        f"model: {net_kwargs.get('cell')}, hidden {net_kwargs.get('hidden')}, {layers} layer{'s' * (layers != 1)}, "
        f"topology {net_kwargs.get('topology')}; seed {cfg.seed}"
    )
    epochs, steps, per_epoch = trainer.get("max_epochs", -1), trainer.get("max_steps", -1), data.batches_per_epoch
    budget = [f"{epochs} epoch{'s' * (epochs != 1)} x {per_epoch} batches" if epochs and epochs > 0 else None]
    budget.append(f"at most {steps} steps" if steps and steps > 0 else None)
    first = ""
    if epochs and epochs > 0 and steps and steps > epochs * per_epoch:  # the epochs end it first
        budget = [f"{epochs * per_epoch} steps"]
        first = (f" ({epochs} epoch{'s' * (epochs != 1)} x {per_epoch} batches end it before trainer.max_steps={steps}; "
                 "raise trainer.max_epochs to train longer)")  # fmt: skip
    lines.append(
        f"budget: {', '.join(b for b in budget if b)} of {data.batch_size}{first}; validation every "
        f"{trainer.get('val_check_interval')} batches on {data.val_size} windows"
    )
    tr = (cfg.get("callbacks") or {}).get("target_reached")
    if tr and tr.get("target") is not None:
        stop = target_text(tr.monitor, tr.target, tr.get("mode", "max"), tr.get("consecutive", 1))
        lines.append(f"stop: when {stop}")
    else:
        lines.append("stop: no target; trains the whole budget")
    return "\n".join(lines)


# -- train.log -----------------------------------------------------------------------------------
class _RunLog:
    """The file side of the tees: lines are held in memory until the run folder is kept (bad
    input must leave nothing behind), then appended to `<run>/train.log` as they are written. A
    log that cannot be written (a full disk) stops taking lines rather than ending the run at a
    print; the checkpoint and metrics.json writes report the disk."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.file: Any = None
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            return
        if self.file is None:
            self.pending.append(text)
            return
        try:
            self.file.write(text)
            if "\n" in text:  # a killed run keeps every finished line
                self.file.flush()
        except (OSError, ValueError):
            self.closed = True

    def keep(self, path: Path) -> None:
        if self.file is None and not self.closed:
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run; append on resume
            self.write("".join(self.pending))
            self.pending = []

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
        self.file, self.pending, self.closed = None, [], True


class _Tee:
    """sys.stdout / sys.stderr stand-in writing to the run log and the terminal stream. After the
    run it passes everything to the terminal only, for anything that kept a reference.

    The terminal is not the run: a stream that fails (a closed pipe such as `| head`, a full disk
    under a redirect) is given up and training goes on, with everything in train.log; a character
    the stream's encoding lacks (PYTHONIOENCODING=ascii, a non-ASCII run folder) is escaped there."""

    def __init__(self, stream: Any, log: _RunLog):
        self.stream, self.log = stream, log
        self.lost = False  # the terminal stream failed; the log goes on

    def write(self, text: str) -> int:
        self.log.write(text)
        if not self.lost:
            try:
                try:
                    self.stream.write(text)
                except UnicodeEncodeError:
                    encoding = getattr(self.stream, "encoding", None) or "ascii"
                    self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
            except (OSError, ValueError, AttributeError):  # AttributeError: no stream (fd 1 closed: None)
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self.stream.flush()
            except (OSError, ValueError, AttributeError):
                self._lose()

    def _lose(self) -> None:
        """Stop writing to the stream, and point its descriptor at /dev/null: what it still buffers,
        and what the interpreter flushes at exit, would fail again (Python then exits 120)."""
        self.lost = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a file descriptor (a test's capture)
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self.stream, name)


_ACTIVE: list[_RunLog] = []  # the log of the train() running in this process, if any


def _all_handlers() -> list[tuple[logging.Logger, logging.Handler]]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return [(lg, h) for lg in loggers for h in lg.handlers]


T = TypeVar("T")


def logged_run(train: Callable[..., T]) -> Callable[..., T]:
    """Decorate `train(cfg)`: what it prints reaches the terminal and `<run>/train.log`.

    Set up here rather than by Hydra's job logging, so a run started without Hydra (tests, a
    resume calling train directly) logs the same way. Under Hydra, its file handler on the same
    train.log is detached meanwhile (otherwise every log record would be written twice), and its
    console handler writes through the tee. Only the primary process logs; ranks > 0 print nothing.
    """

    @functools.wraps(train)
    def wrapper(cfg: DictConfig, *args: Any, **kwargs: Any) -> T:
        from src.hardware import is_primary

        if _ACTIVE or not is_primary():
            return train(cfg, *args, **kwargs)
        try:
            target = os.path.abspath(Path(str(cfg.paths.output_dir)) / LOG_NAME)
        except Exception:  # an unresolvable output_dir: train() reports it
            target = None
        log = _RunLog()
        tees = {"stdout": _Tee(sys.stdout, log), "stderr": _Tee(sys.stderr, log)}
        originals = {"stdout": sys.stdout, "stderr": sys.stderr}
        swapped, detached = [], []
        for lg, h in _all_handlers():
            if isinstance(h, logging.FileHandler):
                if target is not None and h.baseFilename == target:
                    lg.removeHandler(h)
                    detached.append((lg, h))
            elif isinstance(h, logging.StreamHandler):
                base = h.stream.stream if isinstance(h.stream, _Tee) else h.stream
                for name, stream in originals.items():
                    if base is stream:
                        swapped.append((h, h.stream))
                        h.stream = tees[name]
        sys.stdout, sys.stderr = tees["stdout"], tees["stderr"]
        _ACTIVE.append(log)
        try:
            return train(cfg, *args, **kwargs)
        except BaseException as err:
            log.write(error_text(err))  # what train.py prints for it, after train() has returned
            raise
        finally:
            _ACTIVE.remove(log)
            for name, tee in tees.items():
                if getattr(sys, name) is tee:
                    setattr(sys, name, originals[name])
            for h, stream in swapped:
                h.stream = stream
            for lg, h in detached:
                lg.addHandler(h)
            log.close()

    return wrapper


def keep_log(out_dir: Path) -> None:
    """The run folder is made and kept: start appending to its train.log (with what was printed
    so far). Without a `logged_run` around (ranks > 0), nothing."""
    if _ACTIVE:
        _ACTIVE[-1].keep(out_dir / LOG_NAME)


def error_text(err: BaseException) -> str:
    """The line train.py prints for an error that ends a run (a traceback for an unexpected one)."""
    from src.launch import RunFailed, RunInterrupted

    if isinstance(err, RunInterrupted):
        return f"interrupted: {err}\n"
    if isinstance(err, (ConfigError, RunFailed)):
        return f"error: {err}\n"
    return "".join(traceback.format_exception(err))


# -- the summary ---------------------------------------------------------------------------------
def weights_used(trainer: Any, val_step: int | None, out_dir: Path) -> dict[str, Any]:
    """Which weights test/* and val/* were measured on: test on the checkpoint callback's best
    (when there is one), val at the last validation. Recorded in metrics.json and printed in the
    summary's header."""
    ckpt = trainer.checkpoint_callback
    best, final_step = (ckpt.best_model_path if ckpt else "") or "", trainer.global_step
    if best:
        import torch

        step = torch.load(best, map_location="cpu", weights_only=False, mmap=True)["global_step"]
        path = Path(best)
        shown = path.relative_to(out_dir) if path.is_relative_to(out_dir) else path
        chosen = (
            "the latest" if ckpt.monitor is None else f"{'lowest' if ckpt.mode == 'min' else 'highest'} {ckpt.monitor}"
        )
        test = f"{shown} (step {step}, {chosen})"
    else:
        step, test = final_step, f"final weights (step {final_step})"
    if val_step is None:
        val = "no validation ran"
    elif val_step == final_step:
        val = f"final weights (step {val_step}, last validation)"
    else:
        val = f"weights at step {val_step} (last validation; training went on to step {final_step})"
    return {"test": test, "val": val, "test_step": step, "val_step": val_step}


CONTINUOUS_TOLERANCE = 0.05  # a continuous target (adding: a sum in [0, 2]) counts as hit this close


def sample_ok(row: dict[str, Any]) -> bool:
    """A sample window is right when every predicted value hits its expected one: rounded equality
    for integer targets (classes, arithmetic's integers), within CONTINUOUS_TOLERANCE for real-valued
    ones. The ok/ERR rule of the terminal, TensorBoard's Text tab and the other loggers."""
    pairs = list(zip(row["predicted"], row["expected"], strict=True))
    return all(round(p) == e if float(e).is_integer() else abs(p - e) <= CONTINUOUS_TOLERANCE for p, e in pairs)


def diagnostics_lines(d: dict[str, Any]) -> list[str]:
    """What a trained network holds (src/diagnostics.py), as the terminal prints it: memory per
    delay with its chance, the first layer's timescales, the gradient by distance."""
    lines: list[str] = []
    mem = d.get("memory")
    if mem:
        what = "accuracy" if mem["kind"] == "accuracy" else "r2"
        lines += [
            "",
            f"  memory: a linear readout of the input k steps back from the encoder's state after the window's "
            f"last step ({what}; chance {fmt(mem['chance'])})",
            "  "
            + "  ".join(
                f"k={k}: {fmt(s) if s is not None else '-'}" for k, s in zip(mem["delays"], mem["score"], strict=True)
            ),
            f"  capacity {mem['capacity']:.2f} of {sum(s is not None for s in mem['score'])} steps (chance-corrected sum over k"
            + ("; -: an input that never varies, not scored)" if None in mem["score"] else ")"),
        ]
    ts = d.get("timescales")
    if ts:
        lines.append(
            f"  timescales ({ts['kind']}, first layer, {ts['units']} units): retention median "
            f"{fmt(ts['retention_median'])}, p90 {fmt(ts['retention_p90'])}; -1/ln(retention) median "
            f"{fmt(ts['timescale_median'])} steps, p90 {fmt(ts['timescale_p90'])}"
        )
    grads = d.get("gradient_by_delay")
    if grads:
        top = max(grads) or 1.0
        lines.append(
            "  ||dL/d input k steps back|| / max: " + "  ".join(f"k={k}: {g / top:.2g}" for k, g in enumerate(grads))
        )
    by_pos = d.get("accuracy_by_position")
    if by_pos:
        lines.append(
            "  test accuracy by target position: "
            + "  ".join(f"{j}: {fmt(a)}" for j, a in enumerate(by_pos) if a is not None)
        )
    return lines


def print_summary(metrics: dict[str, Any], rows: list[dict[str, Any]], out_dir: Path) -> None:
    w = metrics.get("weights") or {}
    where = ", predicted by the test weights" if "test" in w else ""
    lines = ["", f"Sample test windows (input -> expected | predicted){where}:"] if rows else []
    for r in rows:
        ok = "ok " if sample_ok(r) else "ERR"
        lines.append(f"  {ok} {r['input']} -> {r['expected']} | {r['predicted']}")
    lines.append("")
    if w:
        lines.append(f"  test: {w['test']}")
        lines.append(f"  val:  {w['val']}")
    # regression: the baseline is always predicting the test targets' mean (std 0, mse = variance)
    base = "mean pred" if "test/mse" in metrics else "chance"
    heads = [
        f"test @ step {w['test_step']}" if w.get("test_step") is not None else "test",
        f"val @ step {w['val_step']}" if w.get("val_step") is not None else "val",
    ]
    width = max(10, *(len(h) + 2 for h in heads))
    lines.append(f"  {'metric':<12}{heads[0]:>{width}}{heads[1]:>{width}}{base:>12}")
    for name in ("loss", "acc", "exact", "mse", "mae", "pred_mean", "pred_std"):
        if f"test/{name}" in metrics:
            test, val = metrics[f"test/{name}"], metrics.get(f"val/{name}")
            chance = metrics["chance"].get(name)
            lines.append(
                f"  {name:<12}{fmt(test):>{width}}{fmt(val):>{width}}{fmt(chance) if chance is not None else '-':>12}"
            )
    if "train/loss" in metrics:  # what debug=overfit exists to show: it should approach 0
        lines.append(f"  train/loss {fmt(metrics['train/loss'])} (the last value logged in training)")
    tgt = metrics["target"]
    if tgt["target"] is None:
        lines.append(f"  no target set: trained the whole budget (best {tgt['monitor']} = {fmt(tgt['best'])})")
    else:
        goal = target_text(tgt["monitor"], tgt["target"], tgt.get("mode", "max"), tgt.get("consecutive", 1))
        first = tgt.get("first_hit_step")
        if tgt["reached"]:
            touched = f"; first touched at step {first}" if first is not None and first != tgt["step"] else ""
            lines.append(f"  target {goal}: reached at step {tgt['step']} after {tgt['seconds']:.2f} s{touched}")
        elif first is not None:
            lines.append(
                f"  target {goal}: not reached; touched at step {first} but never held (best {fmt(tgt['best'])})"
            )
        else:
            lines.append(f"  target {goal}: not reached (best {fmt(tgt['best'])})")
    lines.append(f"  steps {metrics['steps']}, params {metrics['params']}, wall {metrics['wall_time_s']:.1f} s")
    lines += diagnostics_lines(metrics.get("diagnostics") or {})  # of the test weights, on the test set
    lines.append(f"Run folder: {out_dir}")
    print("\n".join(lines), flush=True)
