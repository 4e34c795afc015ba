"""The base of every task family: what the trainer, the datamodule, the network builder, the memory
estimate and predict.py read of a task, and nothing a single family alone has.

A family (one file of this package) is a frozen pydantic model (`src.schema.Node`) extending `Task`:
its config fields with their types, ranges, choices and defaults, its cross-field rules as model
validators, and the shapes it implies. Every family provides `vocab`, `context` and `out_len` (a
field, or a property derived from its fields: copy_memory's context is delay + 2 symbols). The
keys that only the echo streams have (framing, lag, stateful, pad_start, scale...) are read here
through neutral class-level values, which a family with such a field replaces by the field.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

from src.schema import ConfigError, Node


class Task(Node):
    """What a batch holds and what the model must predict (vocabulary: design.md).

    window framing: x (batch, context) -> y (batch, out_len); label framing (echo streams):
    x (batch, T) -> y (batch, T), a target at every step, the first `lag` masked. A family adds
    `batch(gen, batch) -> (x, y, mask)`, `targets(x) -> (y, mask)` and `chance() -> dict`
    (the protocol: this package's docstring).
    """

    name: str
    family: str

    # Neutral values for a family without these keys (all but the echo streams).
    framing: ClassVar[str] = "window"
    encoding: ClassVar[str] = "onehot"
    objective: ClassVar[str] = "classification"
    vocab: ClassVar[int]  # every family: a field or a property
    context: ClassVar[int]
    lag: ClassVar[int] = 0
    out_len: ClassVar[int]
    scale: ClassVar[float] = 1.0  # divides scalar inputs and regression targets
    stateful: ClassVar[bool] = False  # consecutive batches continue the same sequences
    pad_start: ClassVar[bool] = False  # windows at a sequence's start, left-padded with symbol `vocab`
    loss_on_every_step: ClassVar[bool] = False  # the loss averages over every step, the metrics over the mask

    @property
    def stateful_windows(self) -> bool:
        """Keras' stateful windows: row i of batch k+1 continues row i of batch k (window framing)."""
        return self.stateful and self.framing == "window"

    @property
    def stateful_stream(self) -> bool:
        """Stateful label streams: batches of `batch_steps` steps of parallel streams."""
        return self.stateful and self.framing == "label"

    @property
    def rows_per_sequence(self) -> int:
        """Rows (windows) cut from one generated sequence and served in order: 1, each row fresh."""
        return 1

    @property
    def batch_steps(self) -> int:
        """Steps of one training batch (a stateful stream's batch is a chunk of its sequences)."""
        return self.context

    @property
    def sample_steps(self) -> int:
        """Steps of one evaluation sample (a stateful stream's: a whole sequence from a reset)."""
        return self.context

    @property
    def alphabet(self) -> int:
        """Input symbols: the vocabulary, plus the pad symbol (index `vocab`) with pad_start. (Not
        `symbols`: copy_memory's field of that name, the count it copies, shadowed it, and the
        memory probe read a copy task of 3 symbols as a vocab of 3.)"""
        return self.vocab + self.pad_start

    @property
    def n_classes(self) -> int:
        return self.vocab

    @property
    def features(self) -> int:
        """Input features per step for encoding=features (a task family's real-valued inputs)."""
        return 1

    @property
    def is_integer_valued(self) -> bool:
        """Targets are integers, so accuracy and exact match are defined for any objective."""
        return True

    @property
    def value_range(self) -> tuple[int, int]:
        """Smallest and largest value the task emits (inputs and targets)."""
        return 0, self.vocab - 1

    def chance_on(self, y: Any, mask: Any) -> dict[str, float]:
        """The memoryless baseline on an evaluation set (y, mask): the task's `chance()`, unless
        it depends on the set (the mean target of a stream task's regression: tasks/echo.py)."""
        return self.chance()

    def unscored(self) -> str | None:
        """Why a typed input (predict.py) that has no counted target has none, or None."""
        return None

    def check_value(self, word: str, v: float) -> None:
        """A typed value must be one of the task's symbols (a progression: any number)."""
        if not v.is_integer() or not 0 <= v < self.vocab:
            raise ConfigError(
                f"input value {word!r} is outside the vocabulary of task {self.name}; use integers in [0, {self.vocab - 1}]."
            )

    def parse(self, words: list[str]) -> list[float] | list[int]:
        """predict.py's typed window, one integer per step by default, checked against the task:
        values it emits (`check_value`, `value_range`); exactly `context` of them for window framing,
        more than `lag` for label framing (a family with other input overrides it: tasks/adding.py)."""
        values = []
        low, high = self.value_range
        for w in words:
            try:
                v = float(w)
            except ValueError:
                raise ConfigError(f"input value {w!r} is not a number.") from None
            if not math.isfinite(v):
                raise ConfigError(f"input value {w!r} is not a finite number.")
            self.check_value(w, v)
            if not low <= v <= high:  # the values the stream emits: what the network was trained on
                raise ConfigError(
                    f"input value {w!r} is outside the values task {self.name} was trained on; use numbers in "
                    f"[{low}, {high}]."
                )
            values.append(int(v) if v.is_integer() else v)
        if self.framing == "label" and len(values) <= self.lag:
            raise ConfigError(
                f"got {len(values)} input values, but task {self.name} targets the value task.lag={self.lag} steps "
                f"back, so no step would have a target; type at least {self.lag + 1}."
            )
        if self.pad_start and not 1 <= len(values) <= self.context:
            raise ConfigError(
                f"got {len(values)} input values, but task {self.name} reads windows of task.context={self.context}, "
                f"left-padded when shorter (task.pad_start=true); type 1 to {self.context}."
            )
        if self.framing == "window" and not self.pad_start and len(values) != self.context:
            raise ConfigError(
                f"got {len(values)} input values, but task {self.name} reads windows of task.context={self.context}; "
                f"type exactly {self.context}."
            )
        return values


# A family's field (echo's `stateful: bool`) takes the place of the base's neutral class-level value
# (`stateful: ClassVar[bool] = False`) on purpose; pydantic warns about such shadowing.
warnings.filterwarnings(
    "ignore", rf'Field name "({"|".join(Task.__class_vars__)})" in "\w+" shadows an attribute', UserWarning
)
