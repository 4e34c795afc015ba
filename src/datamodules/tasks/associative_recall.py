"""Associative recall with several queries: a simpler variant of Zoology's MQAR (the `mqar` family,
tasks/mqar.py), not MQAR itself: values may repeat within a row, the queries follow the pairs
directly with no filler, and the vocabulary is small.

Input (2 n_pairs + n_queries steps): n_pairs key-value pairs, key then value (keys distinct, drawn
from `keys` symbols; values drawn uniformly from `values` symbols), then n_queries of the
presented keys in random order, none twice. Target at each query step: the value that key was
paired with. Tokens: 0..keys-1 the keys, keys..keys+values-1 the values (vocab = keys + values).
Loss, accuracy and exact match count the n_queries query steps (the last n_queries outputs:
out_len = n_queries).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from src.datamodules.tasks.base import Task
from src.schema import ConfigError, PosInt


class AssociativeRecall(Task):
    """n_pairs key-value pairs, then n_queries query keys."""

    name: str = "associative_recall"
    family: Literal["associative_recall"] = "associative_recall"
    n_pairs: PosInt = 4
    n_queries: PosInt = 4
    keys: PosInt = 8
    values: Annotated[int, Field(ge=2)] = 8

    @model_validator(mode="after")
    def enough_keys(self) -> AssociativeRecall:
        n_pairs = self.n_pairs
        if self.keys < n_pairs:
            raise ConfigError(
                f"task.keys={self.keys} is not allowed; n_pairs={n_pairs} distinct keys need keys >= {n_pairs}."
            )
        if self.n_queries > n_pairs:
            raise ConfigError(
                f"task.n_queries={self.n_queries} is not allowed; each query is a different presented key, so "
                f"n_queries <= n_pairs={n_pairs}."
            )
        return self

    @property
    def vocab(self) -> int:
        return self.keys + self.values

    @property
    def context(self) -> int:
        return 2 * self.n_pairs + self.n_queries

    @property
    def out_len(self) -> int:
        return self.n_queries

    def batch(self, gen: Any, batch: int) -> tuple[Any, Any, Any]:
        """x (batch, context) long, y and mask (batch, n_queries): each query's value, all True."""
        import torch

        dev, p = gen.device, self.n_pairs
        # distinct keys (and distinct queries): the first entries of a random permutation per row
        keys = torch.rand(batch, self.keys, generator=gen, device=dev).argsort(1)[:, :p]
        values = torch.randint(self.keys, self.keys + self.values, (batch, p), generator=gen, device=dev)
        asked = torch.rand(batch, p, generator=gen, device=dev).argsort(1)[:, : self.n_queries]
        pairs = torch.stack([keys, values], 2).flatten(1)  # k1 v1 k2 v2 ...
        x = torch.cat([pairs, keys.gather(1, asked)], 1)
        return (x, *self.targets(x))

    def targets(self, x: Any) -> tuple[Any, Any]:
        """The value paired with each query key (batch, n_queries); a query matching no presented
        key (typed input) is masked. The last pair with the key wins if a key repeats."""
        import torch

        p = self.n_pairs
        keys, values, queries = x[:, : 2 * p : 2], x[:, 1 : 2 * p : 2], x[:, 2 * p :]
        match = queries[:, :, None] == keys[:, None, :]  # (batch, n_queries, n_pairs)
        last = (match * torch.arange(1, p + 1, device=x.device)).argmax(-1)
        return values.gather(1, last), match.any(-1)

    def chance(self) -> dict[str, float]:
        """A query's value is uniform over the values whatever the query step, so a model that
        never sees the input scores loss = ln(values) (cross-entropy on the query steps), accuracy
        1 / values, exact match values^-n_queries."""
        return {"loss": math.log(self.values), "acc": 1 / self.values, "exact": self.values**-self.n_queries}


TASK = AssociativeRecall
