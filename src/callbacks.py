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

    def __init__(self, monitor: str = "val/exact", target: float | None = 1.0, mode: str = "max"):
        self.monitor, self.target, self.mode = monitor, target, mode
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
        if hit and self.reached_step is None:
            self.reached_step, self.reached_seconds = trainer.global_step, self.seconds()
        if hit:
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
        return {**self.summary(), "elapsed": self.seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.reached_step, self.reached_seconds = state["best"], state["step"], state["seconds"]
        self._elapsed_before = state["elapsed"]
