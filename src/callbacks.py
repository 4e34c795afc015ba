"""Callbacks the stock Lightning ones do not cover."""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl


class TargetReached(pl.Callback):
    """Stop once a validation metric has been at its target for `consecutive` validations in a
    row, and record when that held (step, seconds) and, separately, the first validation that
    touched the target.

    Lightning's EarlyStopping(stopping_threshold=...) compares strictly (val/exact > 1.0 never
    holds), so a solved run would train on; this stops at >= (max) or <= (min).
    """

    def __init__(self, monitor: str = "val/exact", target: float | None = 1.0, mode: str = "max", consecutive: int = 1):
        self.monitor, self.target, self.mode, self.consecutive = monitor, target, mode, consecutive
        self.streak = 0  # validations in a row at the target
        self.reached_step: int | None = None  # the validation that completed `consecutive` in a row
        self.reached_seconds: float | None = None
        self.first_hit_step: int | None = None  # the first validation at the target, held or not
        self.first_hit_seconds: float | None = None
        self.best: float | None = None
        self._t0 = time.perf_counter()
        self._elapsed_before = 0.0  # fit time of earlier (resumed-from) attempts
        self._stage: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = stage  # called before Lightning restores a checkpoint's callback states

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def seconds(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._t0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        self.best = value if better else self.best
        if self.target is None:
            return
        hit = value >= self.target if self.mode == "max" else value <= self.target
        self.streak = self.streak + 1 if hit else 0
        if hit and self.first_hit_step is None:
            self.first_hit_step, self.first_hit_seconds = trainer.global_step, self.seconds()
        # The first validation at 100% on 1,000 windows can still leave a rare error on fresh
        # data; holding the target over `consecutive` validations makes the stop trustworthy,
        # and only a held target counts as reached (sweep tables read `step` as steps to target).
        if self.streak >= self.consecutive:
            if self.reached_step is None:
                self.reached_step, self.reached_seconds = trainer.global_step, self.seconds()
            trainer.should_stop = True

    def summary(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "target": self.target,
            "consecutive": self.consecutive,
            "best": self.best,
            "reached": self.reached_step is not None,
            "step": self.reached_step,
            "seconds": self.reached_seconds,
            "first_hit_step": self.first_hit_step,
            "first_hit_seconds": self.first_hit_seconds,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**self.summary(), "elapsed": self.seconds(), "streak": self.streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._stage not in (None, "fit"):
            # trainer.test(ckpt_path=best.ckpt) restores callback states too: the record of the
            # fit (reached at step 200) must not roll back to the best checkpoint's (step 150)
            return
        self.best, self._elapsed_before, self.streak = state["best"], state["elapsed"], state.get("streak", 0)
        if "first_hit_step" in state:
            self.reached_step, self.reached_seconds = state["step"], state["seconds"]
            self.first_hit_step, self.first_hit_seconds = state["first_hit_step"], state["first_hit_seconds"]
        else:  # saved before the two were told apart: `step` was the first validation at the target
            self.first_hit_step, self.first_hit_seconds = state["step"], state["seconds"]
            held = self.target is not None and self.streak >= self.consecutive
            self.reached_step, self.reached_seconds = (state["step"], state["seconds"]) if held else (None, None)


class StepTimer(pl.Callback):
    """Instrumentation for metrics.json and the benchmark: wall-clock time of the first training
    step, and training steps per second with validation time left out."""

    def __init__(self) -> None:
        self.first_step_at: float | None = None  # time.time() when the first batch started
        self._t0: float | None = None
        self._t_last = 0.0
        self._in_val = 0.0
        self._val_start = 0.0
        self.batches = 0
        self.val_step: int | None = None  # global step of the last validation: the weights val/* measured

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if self._t0 is None:
            self.first_step_at, self._t0 = time.time(), time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ):
        self.batches += 1
        self._t_last = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._t0 is not None:
            self._in_val += time.perf_counter() - self._val_start
        if not trainer.sanity_checking:
            self.val_step = trainer.global_step

    def summary(self) -> dict[str, Any]:
        # The first batch's own time is not counted: from its start to the last batch's end
        # there are batches - 1 intervals plus the last step; count batches / elapsed.
        elapsed = (self._t_last - self._t0 - self._in_val) if self._t0 is not None else 0.0
        return {
            "first_step_at": self.first_step_at,
            "train_batches_per_s": self.batches / elapsed if elapsed > 0 else None,
            "validation_s": self._in_val,
        }


class Progress(pl.Callback):
    """Progress on the terminal (rank 0): a line per validation with the monitored metric against
    its target, and between validations that are far apart a heartbeat line every `heartbeat_s`
    seconds (step, steps/s, the loss of the batch just trained). Per training step the cost is one
    clock read and a comparison; a loss is read from the device only for a line that is printed.
    `progress=false` leaves it out."""

    def __init__(self, monitor: str = "val/exact", heartbeat_s: float = 5.0):
        self.monitor, self.heartbeat_s = monitor, heartbeat_s
        self._next = math.inf  # when the next heartbeat is due; inf: none (ranks > 0, outside a fit)
        self._t0 = 0.0
        self._last = (0.0, 0)  # clock and step of the last line printed
        self._budget = ""  # "/<most steps>" when known
        self._batches = 0  # the epochs' batches, 0 when unbounded
        self._target: TargetReached | None = None
        self._loss: Any = None  # the last training batch's loss (a tensor), when the step returns one

    def _where(self, trainer: pl.Trainer) -> str:
        if trainer.lightning_module.automatic_optimization:  # one optimizer step per batch
            return f"step {trainer.global_step}{self._budget}"
        # manual optimization (stateful tasks) steps once per chunk: epochs count batches, max_steps steps
        batches = f"/{self._batches}" if self._batches else ""
        steps = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
        done = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        return f"batch {done}{batches} (step {trainer.global_step}{steps})"

    def _say(self, trainer: pl.Trainer, text: str) -> None:
        now = time.perf_counter()
        print(f"{self._where(trainer):<16}{now - self._t0:7.1f} s  {text}", flush=True)
        self._last, self._next = (now, trainer.global_step), now + self.heartbeat_s

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._target = next(
            (c for c in trainer.callbacks if isinstance(c, TargetReached) and c.monitor == self.monitor), None
        )
        batches = trainer.num_training_batches * trainer.max_epochs if trainer.max_epochs > 0 else math.inf
        budget = min(batches, trainer.max_steps) if trainer.max_steps > 0 else batches
        self._budget = f"/{budget}" if math.isfinite(budget) else ""
        self._batches = batches if math.isfinite(batches) else 0
        self._t0 = time.perf_counter()
        self._last, self._next = (self._t0, trainer.global_step), self._t0 + self.heartbeat_s
        # start-up (imports, data, model) is over: say so, and from where a resumed run goes on
        self._say(trainer, "resumed: training goes on from here" if trainer.global_step > 0 else "training starts")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._next = math.inf

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Lightning hands over a detached copy of the batch's loss: keeping a reference costs no
        # device sync, and a validation line can say the loss of the batch just before it.
        self._loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        now = time.perf_counter()
        if now < self._next:
            return
        said = f"train/loss {float(self._loss):.4g} (this batch)" if self._loss is not None else ""
        t, step = self._last
        rate = (trainer.global_step - step) / (now - t) if now > t else 0.0
        self._say(trainer, f"{rate:.1f} steps/s  {said}".rstrip())

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not math.isfinite(self._next):
            return
        m = trainer.callback_metrics
        if self._loss is not None:
            parts = [f"train/loss {float(self._loss):.4g} (last batch)"]
        else:  # manual optimization returns no loss: the last one logged
            parts = [f"train/loss {float(m['train/loss']):.4g} (logged)"] if "train/loss" in m else []
        parts += [f"val/loss {float(m['val/loss']):.4g}"] if "val/loss" in m and self.monitor != "val/loss" else []
        value = m.get(self.monitor)
        if value is not None:
            text = f"{self.monitor} {float(value):.4g}"
            tr = self._target
            if tr is not None and tr.target is not None:
                op = "<=" if tr.mode == "min" else ">="
                held = (
                    f"reached ({tr.streak} in a row)"
                    if tr.reached_step is not None
                    else f"{tr.streak}/{tr.consecutive} in a row"
                )
                text += f" (best {tr.best:.4g}; target {op} {tr.target}: {held})"
            elif tr is not None:
                text += f" (best {tr.best:.4g})"
            parts.append(text)
        self._say(trainer, "  ".join(parts))
