"""The residual stack shared by the linear-recurrence cells (lru, mingru) and the scans that compute
their recurrences over a whole sequence at once.

The LRU paper's network: an input projection to `hidden`, then `layers` residual blocks
(LayerNorm -> recurrence -> GLU -> dropout, + input). A recurrence is a module with
`forward(x, h0) -> (y, last state)` over (batch, time, hidden) and `step(x, h) -> (y, state)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# -- scans: h_t = a_t * h_{t-1} + b_t for every t at once ------------------------------------------
def complex_scan(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> tuple:
    """All h_t of the complex recurrence h_t = a_t h_{t-1} + b_t, h_{-1} = 0, in log2(time) steps
    (Hillis-Steele prefix scan). a, b: (re, im) pairs of (batch, time, n) -> (re, im) of h.

    After the pass with offset d, position t holds the composition of the last 2d steps:
    (A, B)_t <- (A_t A_{t-d}, A_t B_{t-d} + B_t), the associative operator of a linear recurrence.
    """
    (ar, ai), (br, bi) = a, b
    time, d = ar.shape[1], 1
    while d < time:
        # the first d positions are already complete: compose them with the identity (1, 0)
        par, pai, pbr, pbi = (F.pad(v[:, :-d], (0, 0, d, 0), value=fill) for v, fill in
                              ((ar, 1.0), (ai, 0.0), (br, 0.0), (bi, 0.0)))  # fmt: skip
        br, bi = ar * pbr - ai * pbi + br, ar * pbi + ai * pbr + bi
        ar, ai = ar * par - ai * pai, ar * pai + ai * par
        d *= 2
    return br, bi


def log_space_scan(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t with a, b > 0 given as logs (batch, time, n), h_{-1} = 0: Heinsen's
    sequential-in-log-space scan, log h_t = A_t + logcumsumexp(log b - A)_t with A = cumsum(log a).

    Computed in float64: A_t falls linearly with t (by 3 per step where a gate writes 95%) and the
    two terms cancel to log h_t, so float32 would lose |A_t| * 6e-8 of h_t (1e-5 after 33 steps)."""
    a_star = prefix_sum(log_a.double())
    return (a_star + (log_b.double() - a_star).logcumsumexp(dim=1)).exp().to(log_b.dtype)


def prefix_sum(x: torch.Tensor) -> torch.Tensor:
    """cumsum over dim 1; on CUDA under torch.use_deterministic_algorithms (trainer.deterministic)
    a Hillis-Steele scan of plain additions instead, since CUDA's cumsum has no deterministic
    kernel and raises there (CPU keeps cumsum: its results stay as they were)."""
    return scan_sum(x) if x.is_cuda and torch.are_deterministic_algorithms_enabled() else x.cumsum(dim=1)


def scan_sum(x: torch.Tensor) -> torch.Tensor:
    """cumsum over dim 1 by log2(time) passes of elementwise additions (deterministic everywhere)."""
    d = 1
    while d < x.shape[1]:
        x = x + F.pad(x[:, :-d], (0, 0, d, 0))
        d *= 2
    return x


# -- residual stack shared by the two linear-recurrence cells ----------------------------------------
class Block(nn.Module):
    """One layer of the LRU paper's network: x + dropout(GLU(recurrence(LayerNorm(x))))."""

    def __init__(self, hidden: int, recurrence: nn.Module, dropout: float):
        super().__init__()
        self.norm, self.recurrence = nn.LayerNorm(hidden), recurrence
        self.glu = nn.Linear(hidden, 2 * hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.recurrence(self.norm(x), h0)
        return x + self.dropout(F.glu(self.glu(y), dim=-1)), h

    def step(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.recurrence.step(self.norm(x), h)
        return x + self.dropout(F.glu(self.glu(y), dim=-1)), h


class StackedCell(nn.Module):
    """An input projection to `hidden`, then `layers` residual blocks. state: (layers, batch, width)
    with each layer's recurrence state; None starts every layer from zero."""

    def __init__(self, input_size: int, hidden: int, layers: int, dropout: float, recurrences: list[nn.Module]):
        super().__init__()
        self.hidden_size, self.num_layers = hidden, layers
        self.proj = nn.Linear(input_size, hidden)
        self.blocks = nn.ModuleList(Block(hidden, r, dropout) for r in recurrences)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, out = self.proj(x), []
        for i, block in enumerate(self.blocks):
            x, h = block(x, None if state is None else state[i])
            out.append(h)
        return x, torch.stack(out)

    def step(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, out = self.proj(x), []
        for i, block in enumerate(self.blocks):
            x, h = block.step(x, None if state is None else state[i])
            out.append(h)
        return x, torch.stack(out)

    def init_weights(self, scheme: str) -> None:
        """The papers' initialisation whatever the scheme: set when the layers are built."""

    def first_layer_input(self, e: torch.Tensor) -> torch.Tensor:
        """What the first layer's recurrence reads for encoded inputs e: LayerNorm(proj(e))."""
        return self.blocks[0].norm(self.proj(e))
