"""The adding problem (Hochreiter & Schmidhuber 1997, in the form of Arjovsky et al. 2016).

Input (T steps, 2 features): a value drawn uniformly from [0, 1] and a marker that is 1 at two
steps, one in each half of the sequence, and 0 elsewhere. Target: the sum of the two marked values,
one number after the last step (regression, MSE).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from src.datamodules.tasks.base import Task
from src.schema import ConfigError

Length = Annotated[int, Field(ge=2, json_schema_extra={"allowed": "the two marked steps need length >= 2"})]


class Adding(Task):
    """length: T, the steps of a sequence."""

    name: str = "adding"
    family: Literal["adding"] = "adding"
    length: Length = 100

    vocab: ClassVar[int] = 2  # the marker's values: no vocabulary is read (encoding=features)
    out_len: ClassVar[int] = 1
    encoding: ClassVar[str] = "features"
    objective: ClassVar[str] = "regression"

    @property
    def context(self) -> int:
        return self.length

    @property
    def features(self) -> int:
        return 2  # value, marker

    @property
    def is_integer_valued(self) -> bool:
        return False

    def batch(self, gen: Any, batch: int) -> tuple[Any, Any, Any]:
        """x (batch, T, 2) float, y (batch, 1) float, mask (batch, 1) all True."""
        import torch

        half, dev = self.length // 2, gen.device
        values = torch.rand(batch, self.length, generator=gen, device=dev)
        first = torch.randint(0, half, (batch,), generator=gen, device=dev)
        second = torch.randint(half, self.length, (batch,), generator=gen, device=dev)
        marker = torch.zeros_like(values)
        rows = torch.arange(batch, device=dev)
        marker[rows, first] = marker[rows, second] = 1.0
        x = torch.stack([values, marker], -1)
        return (x, *self.targets(x))

    def targets(self, x: Any) -> tuple[Any, Any]:
        """The sum of the marked values: (batch, 1), and a mask of True."""
        import torch

        y = (x[..., 0] * x[..., 1]).sum(1, keepdim=True)
        return y, torch.ones_like(y, dtype=torch.bool)

    def parse(self, words: list[str]) -> list[list[float]]:
        """predict.py input: T (value, marker) pairs, values in [0, 1], exactly two markers of 1."""
        try:
            numbers = [float(w) for w in words]
        except ValueError:
            raise ConfigError(f"task {self.name} reads numbers; got {' '.join(words)!r}.") from None
        pairs = [numbers[i : i + 2] for i in range(0, len(numbers), 2)]
        if len(numbers) != 2 * self.length or any(not 0 <= v <= 1 or m not in (0, 1) for v, m in pairs):
            raise ConfigError(
                f"task {self.name} reads task.length={self.length} pairs 'value marker' (value in [0, 1], marker 0 "
                f"or 1), {2 * self.length} numbers; got {len(numbers)}."
            )
        if sum(m for _, m in pairs) != 2:
            raise ConfigError(f"task {self.name} needs exactly two pairs marked 1; got {sum(m for _, m in pairs):g}.")
        return pairs

    def chance(self) -> dict[str, float]:
        """A model that never sees the input predicts the mean sum, 1: its MSE is the variance of
        the sum of two U[0, 1] values, 2/12 = 1/6, its mean absolute error E|S - 1| = 1/3 (S is
        triangular on [0, 2]); a constant never equals a continuous target (acc, exact 0)."""
        return {"loss": 1 / 6, "mse": 1 / 6, "mae": 1 / 3, "acc": 0.0, "exact": 0.0, "pred_mean": 1.0, "pred_std": 0.0}


TASK = Adding
