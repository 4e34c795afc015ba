"""The copy-memory task (Arjovsky, Shah & Bengio 2016, after Hochreiter & Schmidhuber 1997).

Input (T + 20 steps): 10 symbols drawn uniformly from `categories` (8) values, T - 1 blanks, a
delimiter, 10 blanks. Target: blanks for the first T + 10 steps, then the 10 symbols in order.
Tokens: 0 blank, 1..categories the symbols, categories + 1 the delimiter (vocab = categories + 2).
The loss (cross-entropy) averages over all T + 20 steps, as in the paper; accuracy and exact match
count the 10 recall steps only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from src.config import ConfigError, Task, _int, check_known_keys

FIELDS = {"name", "family", "delay", "symbols", "categories"}


@dataclass(frozen=True)
class CopyMemory(Task):
    """delay: T, the steps between the last symbol and the delimiter's answer window."""

    delay: int = 10
    symbols: int = 10
    categories: int = 8
    loss_on_every_step = True

    @classmethod
    def from_config(cls, g: dict[str, Any], tbptt: int = 1) -> CopyMemory:
        check_known_keys("task", g, FIELDS)
        delay = _int("task.delay", g.get("delay", 10))
        symbols = _int("task.symbols", g.get("symbols", 10))
        categories = _int("task.categories", g.get("categories", 8))
        if categories < 2:
            raise ConfigError(f"task.categories={categories} is not allowed; recall needs at least 2 categories.")
        length = delay + 2 * symbols
        return cls(
            name=str(g.get("name", "copy_memory")), stream="copy_memory", vocab=categories + 2,
            context=length, lag=0, out_len=length, framing="window", transform="identity",
            encoding="onehot", objective="classification", scale=1.0, step=0, start_low=0,
            start_high=0, windows_per_sequence=1, stateful=False, seq_len=length, chunk=1,
            delay=delay, symbols=symbols, categories=categories,
        )  # fmt: skip

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
