"""Progression: arithmetic streams start + step * t (start uniform in [start_low, start_high]);
read a window of `context` values, predict the next one (transform `next`: the newest value plus
`step`). Values have no vocabulary: scalar inputs, regression targets, both divided by `scale`.

A stream task: its fields and rules are those of `echo` (src/datamodules/tasks/echo.py), with the
stream, transform, encoding, objective and framing an arithmetic stream allows (`check_stream`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from src.datamodules.tasks.echo import Echo
from src.schema import ConfigError


class Progression(Echo):
    """The arithmetic stream's task; its fields are echo's, with the defaults of a progression."""

    STREAM: ClassVar[str] = "arithmetic"

    family: Literal["progression"] = "progression"
    stream: Literal["uniform", "arithmetic"] = "arithmetic"
    transform: Literal["identity", "invert", "next"] = "next"
    encoding: Literal["onehot", "embedding", "scalar"] = "scalar"
    objective: Literal["classification", "regression"] = "regression"

    def check_stream(self) -> None:
        transform, encoding, objective, framing = self.transform, self.encoding, self.objective, self.framing
        if transform != "next":
            raise ConfigError(f"task.transform={transform!r} is not allowed with task.stream=arithmetic; use next.")
        if encoding != "scalar" or objective != "regression":
            raise ConfigError(
                f"task.encoding={encoding!r} with task.objective={objective!r} is not allowed with "
                "task.stream=arithmetic: progression values have no vocabulary; use encoding=scalar, "
                "objective=regression."
            )
        if framing != "window":
            raise ConfigError(
                f"task.framing={framing!r} is not allowed with task.stream=arithmetic: the target is the value "
                "after the window; use framing=window."
            )

    @property
    def rows_per_sequence(self) -> int:
        return 1  # every window is a fresh progression

    @property
    def value_range(self) -> tuple[int, int]:
        return self.start_low, self.start_high + self.step * self.context

    def unscored(self) -> str | None:
        return f"the input is not a progression with step {self.step}"

    def batch(self, gen: Any, batch: int) -> tuple[Any, Any, Any]:
        """x (batch, context) long: progressions start + step * t, start uniform in
        [start_low, start_high]; y (batch, 1) the value after the window; mask all True."""
        import torch

        start = torch.randint(self.start_low, self.start_high + 1, (batch, 1), generator=gen, device=gen.device)
        x = start + self.step * torch.arange(self.context, device=gen.device)
        return (x, *self.targets(x))

    def targets(self, x: Any) -> tuple[Any, Any]:
        """The value after the window (the newest one plus `step`), (batch, 1); counted where the
        window is a progression with step `step` (a typed window need not be one)."""
        steps = x[:, 1:] - x[:, :-1]
        return x[:, -1:] + self.step, (steps == self.step).all(1, keepdim=True)

    def check_value(self, word: str, v: float) -> None:
        """Any number: the range check of `parse` is the only one."""


TASK = Progression
