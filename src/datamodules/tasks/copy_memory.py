"""The copy-memory task (Arjovsky, Shah & Bengio 2016, after Hochreiter & Schmidhuber 1997).

Input (T + 20 steps): 10 symbols drawn uniformly from `categories` (8) values, T - 1 blanks, a
delimiter, 10 blanks. Target: blanks for the first T + 10 steps, then the 10 symbols in order.
Tokens: 0 blank, 1..categories the symbols, categories + 1 the delimiter (vocab = categories + 2).
The loss (cross-entropy) averages over all T + 20 steps, as in the paper; accuracy and exact match
count the 10 recall steps only.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from src.datamodules.tasks.base import Task
from src.schema import PosInt

Categories = Annotated[int, Field(ge=2, json_schema_extra={"allowed": "recall needs at least 2 categories"})]


class CopyMemory(Task):
    """delay: T, the steps between the last symbol and the delimiter's answer window."""

    name: str = "copy_memory"
    family: Literal["copy_memory"] = "copy_memory"
    delay: PosInt = 10
    symbols: PosInt = 10
    categories: Categories = 8

    loss_on_every_step: ClassVar[bool] = True

    @property
    def vocab(self) -> int:
        return self.categories + 2  # blank, symbols, delimiter

    @property
    def context(self) -> int:
        return self.delay + 2 * self.symbols

    @property
    def out_len(self) -> int:
        return self.context

    def batch(self, gen: Any, batch: int) -> tuple[Any, Any, Any]:
        """x, y (batch, T + 20) long, mask (batch, T + 20) bool: True on the recall steps."""
        import torch

        x = torch.zeros(batch, self.context, dtype=torch.long, device=gen.device)
        x[:, : self.symbols] = torch.randint(
            1, self.categories + 1, (batch, self.symbols), generator=gen, device=gen.device
        )
        x[:, self.delay + self.symbols - 1] = self.categories + 1  # the delimiter: recall starts next step
        return (x, *self.targets(x))

    def targets(self, x: Any) -> tuple[Any, Any]:
        """The first `symbols` inputs, due on the last `symbols` steps; blanks before."""
        import torch

        y = torch.zeros_like(x)
        y[:, -self.symbols :] = x[:, : self.symbols]
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:, -self.symbols :] = True
        return y, mask

    def chance(self) -> dict[str, float]:
        """A model that never sees the input predicts blanks exactly and guesses the recall steps
        uniformly: loss = symbols * ln(categories) / (T + 2 symbols) (10 ln 8 / (T + 20)), accuracy
        on the recall steps 1 / categories, exact match categories^-symbols."""
        return {
            "loss": self.symbols * math.log(self.categories) / self.context,
            "acc": 1 / self.categories,
            "exact": self.categories**-self.symbols,
        }


TASK = CopyMemory
