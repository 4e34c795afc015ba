"""Callbacks the stock Lightning ones do not cover."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl


class TargetReached(pl.Callback):
    """Stop as soon as a validation metric reaches its target, and record when (step, seconds).

    Lightning's EarlyStopping(stopping_threshold=...) compares strictly (val/exact > 1.0 never
    holds), so a solved run would train on; this stops at >= (max) or <= (min).
    """

    def __init__(self, monitor: str = "val/exact", target: float | None = 1.0, mode: str = "max", consecutive: int = 1):
        self.monitor, self.target, self.mode, self.consecutive = monitor, target, mode, consecutive
        self._streak = 0  # validations in a row at the target
        self.reached_step: int | None = None
        self.reached_seconds: float | None = None
        self.best: float | None = None
        self._t0 = time.perf_counter()
        self._elapsed_before = 0.0  # fit time of earlier (resumed-from) attempts

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
        self._streak = self._streak + 1 if hit else 0
        if hit and self.reached_step is None:
            self.reached_step, self.reached_seconds = trainer.global_step, self.seconds()
        # The first validation at 100% on 1,000 windows can still leave a rare error on fresh
        # data; holding the target over `consecutive` validations makes the stop trustworthy.
        if self._streak >= self.consecutive:
            trainer.should_stop = True

    def summary(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "target": self.target,
            "best": self.best,
            "reached": self.reached_step is not None,
            "step": self.reached_step,
            "seconds": self.reached_seconds,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**self.summary(), "elapsed": self.seconds(), "streak": self._streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.reached_step, self.reached_seconds = state["best"], state["step"], state["seconds"]
        self._elapsed_before, self._streak = state["elapsed"], state.get("streak", 0)


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

    def summary(self) -> dict[str, Any]:
        # The first batch's own time is not counted: from its start to the last batch's end
        # there are batches - 1 intervals plus the last step; count batches / elapsed.
        elapsed = (self._t_last - self._t0 - self._in_val) if self._t0 is not None else 0.0
        return {
            "first_step_at": self.first_step_at,
            "train_batches_per_s": self.batches / elapsed if elapsed > 0 else None,
            "validation_s": self._in_val,
        }
