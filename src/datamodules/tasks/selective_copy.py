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
from typing import Annotated, Any, Literal

from pydantic import Field

from src.datamodules.tasks.base import Task
from src.schema import NonNegInt, PosInt

Categories = Annotated[int, Field(ge=2, json_schema_extra={"allowed": "recall needs at least 2 categories"})]


class SelectiveCopy(Task):
    """length: the blanks among which the n_tokens symbols are scattered."""

    name: str = "selective_copy"
    family: Literal["selective_copy"] = "selective_copy"
    length: NonNegInt = 16
    n_tokens: PosInt = 4
    categories: Categories = 8

    @property
    def vocab(self) -> int:
        return self.categories + 2  # blank, symbols, delimiter

    @property
    def context(self) -> int:
        return self.length + 2 * self.n_tokens + 1

    @property
    def out_len(self) -> int:
        return self.n_tokens

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
