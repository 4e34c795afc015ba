"""Selective copying (Gu & Dao 2023, Mamba; the `variable` copying task of state-spaces/s4).

Input (length + 2 n_tokens + 1 steps): `n_tokens` symbols drawn uniformly from `categories` values,
placed at random positions among `length` blanks (a span of length + n_tokens steps), a
delimiter, then n_tokens blanks. Target: the n_tokens symbols in the order they appeared, one on
each of the last n_tokens steps. Unlike copy_memory the symbols' positions vary, so a model must
select them by content, not count steps. Tokens: 0 blank, 1..categories the symbols,
categories + 1 the delimiter (vocab = categories + 2). Loss, accuracy and exact match count the
n_tokens recall steps (the last n_tokens outputs: out_len = n_tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from src.config import ConfigError, Task, _int, check_known_keys

FIELDS = {"name", "family", "length", "n_tokens", "categories"}


@dataclass(frozen=True)
class SelectiveCopy(Task):
    """length: the blanks among which the n_tokens symbols are scattered."""

    length: int = 16
    n_tokens: int = 4
    categories: int = 8

    @classmethod
    def from_config(cls, g: dict[str, Any], tbptt: int = 1) -> SelectiveCopy:
        check_known_keys("task", g, FIELDS)
        length = _int("task.length", g.get("length", 16), 0)
        n_tokens = _int("task.n_tokens", g.get("n_tokens", 4))
        categories = _int("task.categories", g.get("categories", 8))
        if categories < 2:
            raise ConfigError(f"task.categories={categories} is not allowed; recall needs at least 2 categories.")
        context = length + 2 * n_tokens + 1
        return cls(
            name=str(g.get("name", "selective_copy")), stream="selective_copy", vocab=categories + 2,
            context=context, lag=0, out_len=n_tokens, framing="window", transform="identity",
            encoding="onehot", objective="classification", scale=1.0, step=0, start_low=0,
            start_high=0, windows_per_sequence=1, stateful=False, seq_len=context, chunk=1,
            length=length, n_tokens=n_tokens, categories=categories,
        )  # fmt: skip

    def batch(self, gen: Any, batch: int) -> tuple[Any, Any, Any]:
        """x (batch, context) long, y and mask (batch, n_tokens): the symbols in order, all True."""
        import torch

        span, dev = self.length + self.n_tokens, gen.device
        # n distinct positions per row: the first n of a random permutation, sorted so that
        # scattering the symbols there keeps their order of appearance
        where = torch.rand(batch, span, generator=gen, device=dev).argsort(1)[:, : self.n_tokens].sort(1).values
        symbols = torch.randint(1, self.categories + 1, (batch, self.n_tokens), generator=gen, device=dev)
        x = torch.zeros(batch, self.context, dtype=torch.long, device=dev)
        x[:, :span] = x[:, :span].scatter(1, where, symbols)
        x[:, span] = self.categories + 1  # the delimiter: recall starts next step
        return (x, *self.targets(x))

    def targets(self, x: Any) -> tuple[Any, Any]:
        """The symbols before the delimiter in order of appearance (batch, n_tokens); a row with
        fewer (typed input) has its missing targets masked."""
        import torch

        span = x[:, : self.length + self.n_tokens]
        is_symbol = (span >= 1) & (span <= self.categories)
        # a stable sort puts the symbols' positions first, in order
        first = (~is_symbol).to(torch.uint8).sort(dim=1, stable=True).indices[:, : self.n_tokens]
        mask = is_symbol.gather(1, first)
        return span.gather(1, first) * mask, mask

    def chance(self) -> dict[str, float]:
        """Each recall target is uniform over the categories whatever the step, so a model that
        never sees the input scores loss = ln(categories) (cross-entropy on the recall steps),
        accuracy 1 / categories, exact match categories^-n_tokens."""
        return {
            "loss": math.log(self.categories),
            "acc": 1 / self.categories,
            "exact": self.categories**-self.n_tokens,
        }


TASK = SelectiveCopy
