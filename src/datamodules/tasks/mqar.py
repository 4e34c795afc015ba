"""Multi-query associative recall as Zoology builds it (Arora, Eyuboglu et al. 2023, "Zoology";
their generator: HazyResearch/zoology, zoology/data/multiquery_ar.py, num_passes=1). Written here
in torch from its description; `associative_recall` is the simpler variant without filler.

Input (input_seq_len steps): num_kv_pairs key-value pairs, key then value, then the query region
of input_seq_len - 2 num_kv_pairs steps. Keys are distinct tokens of 1..vocab_size//2 - 1, values
distinct tokens of vocab_size//2..vocab_size - 1 (disjoint halves of the vocabulary). Every key is
queried once: key i sits at offset 2 g_i of the query region, where the gaps g_i are drawn without
replacement from 0..space - 1 (space = (input_seq_len - 2 num_kv_pairs) // 2) with probability
proportional to (g + 1)^(power_a - 1), a power law that favours queries soon after the pairs
(power_a = 1: uniform). Every other step is filler: uniform over the whole vocabulary (keys and
values included) with random_non_queries, else token 0. Target: at each query step, the value
paired with its key; every other step of the query region is masked (out_len: the query region).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from src.datamodules.tasks.base import Task
from src.schema import ConfigError, PosInt

Vocab = Annotated[int, Field(ge=4, json_schema_extra={"allowed": "keys and values need vocab_size >= 4"})]


class MQAR(Task):
    """Zoology's MQAR; defaults are Zoology's smallest setting but the vocabulary (theirs: 8192)."""

    name: str = "mqar"
    family: Literal["mqar"] = "mqar"
    vocab_size: Vocab = 256
    input_seq_len: PosInt = 64
    num_kv_pairs: PosInt = 4
    power_a: Annotated[float, Field(gt=0)] = 0.01
    random_non_queries: bool = True
    # tokens reach the network through a learned embedding (model.embedding_dim), as Zoology's
    # models read them: one-hot inputs of 8192 symbols cost 8192 weights per unit
    encoding: Literal["onehot", "embedding"] = "embedding"

    @model_validator(mode="after")
    def _fits(self) -> MQAR:
        p, n, v = self.num_kv_pairs, self.input_seq_len, self.vocab_size
        if n % 2:
            raise ConfigError(
                f"task.input_seq_len={n} is not allowed; it must be even (query slots alternate with filler)."
            )
        if 4 * p > n:
            raise ConfigError(
                f"task.num_kv_pairs={p} is not allowed; the pairs and a query slot per key need "
                f"task.input_seq_len >= 4 num_kv_pairs = {4 * p} (it is {n})."
            )
        if p > v // 2 - 1:
            raise ConfigError(
                f"task.num_kv_pairs={p} is not allowed; distinct keys come from tokens 1..{v // 2 - 1} "
                f"(task.vocab_size={v}), so num_kv_pairs <= {v // 2 - 1}."
            )
        return self

    @property
    def vocab(self) -> int:
        return self.vocab_size

    @property
    def context(self) -> int:
        return self.input_seq_len

    @property
    def out_len(self) -> int:
        return self.input_seq_len - 2 * self.num_kv_pairs  # the query region

    @property
    def space(self) -> int:
        """Query slots: the even offsets of the query region."""
        return self.out_len // 2

    def gap_weights(self) -> list[float]:
        """Zoology's power law over the gaps 0..space-1, normalised: p(g) ~ (g + 1)^(power_a - 1)."""
        w = [self.power_a * (g + 1) ** (self.power_a - 1) for g in range(self.space)]
        return [x / sum(w) for x in w]

    def batch(self, gen: Any, batch: int) -> tuple[Any, Any, Any]:
        """x (batch, input_seq_len) long; y, mask (batch, out_len): the values at the query steps."""
        import torch

        dev, p, v, half = gen.device, self.num_kv_pairs, self.vocab_size, self.vocab_size // 2
        # distinct keys and values: the first p entries of a random permutation per row
        keys = 1 + torch.rand(batch, half - 1, generator=gen, device=dev).argsort(1)[:, :p]
        values = half + torch.rand(batch, v - half, generator=gen, device=dev).argsort(1)[:, :p]
        # successive draws without replacement, as numpy's choice(replace=False, p=...) makes them
        w = torch.tensor(self.gap_weights(), dtype=torch.float64, device=dev).expand(batch, -1)
        slot = 2 * torch.multinomial(w, p, replacement=False, generator=gen)  # offsets in the query region
        x = torch.zeros(batch, self.input_seq_len, dtype=torch.long, device=dev)
        x[:, 0 : 2 * p : 2], x[:, 1 : 2 * p : 2] = keys, values
        x[:, 2 * p :] = x[:, 2 * p :].scatter(1, slot, keys)
        if self.random_non_queries:  # token 0 marks every free step (keys and values are >= 1)
            filler = torch.randint(0, v, x.shape, generator=gen, device=dev)
            x = torch.where(x == 0, filler, x)
        y = torch.zeros(batch, self.out_len, dtype=torch.long, device=dev).scatter(1, slot, values)
        mask = torch.zeros(batch, self.out_len, dtype=torch.bool, device=dev).scatter(1, slot, True)
        return x, y, mask

    def targets(self, x: Any) -> tuple[Any, Any]:
        """For a typed input (predict.py), which cannot tell a query from filler: every even offset
        of the query region holding a presented key is a query, answered with that key's value (the
        first pair with it); the other steps are masked. A generated batch's mask counts only the
        placed queries, so filler that repeats a key at a query slot is not scored there."""
        import torch

        p = self.num_kv_pairs
        keys, values, region = x[:, 0 : 2 * p : 2], x[:, 1 : 2 * p : 2], x[:, 2 * p :]
        match = region[:, :, None] == keys[:, None, :]  # (batch, out_len, num_kv_pairs)
        even = torch.arange(region.shape[1], device=x.device) % 2 == 0
        mask = match.any(-1) & even
        y = values.gather(1, match.int().argmax(-1)) * mask
        return y, mask

    def chance(self) -> dict[str, float]:
        """A model that ignores the input knows only that a query's value is one of the
        n = vocab_size - vocab_size//2 values, uniform at every query step: loss ln n
        (cross-entropy on the query steps), accuracy 1/n, exact match (all num_kv_pairs right)
        n^-num_kv_pairs (a fixed guess per step; the values of a row are distinct, which an
        input-blind model cannot use beyond this)."""
        n = self.vocab_size - self.vocab_size // 2
        return {"loss": math.log(n), "acc": 1 / n, "exact": float(n) ** -self.num_kv_pairs}


TASK = MQAR
