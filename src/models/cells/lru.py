"""lru: the Linear Recurrent Unit (Orvieto et al. 2023), a complex diagonal linear recurrence per
layer computed over the whole sequence by a scan, stacked in the paper's residual blocks."""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import model_validator
from torch import nn

from src.models.cells._stack import StackedCell, complex_scan
from src.schema import ConfigError, Node


class LRUOptions(Node):
    """r_min, r_max: the ring the eigenvalue magnitudes |lambda| start on, uniform in area (0 and 1:
    the whole unit disc; the paper narrows it to 0.9-0.999 for its long-range tasks, so that every
    unit starts remembering for 10-1000 steps); max_phase: the phases arg(lambda) start uniform in
    [0, max_phase] (the paper: 2 pi, or pi / 10 for its longest tasks)."""

    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi

    @model_validator(mode="before")
    @classmethod
    def ring(cls, data: Any) -> Any:
        """Inside the unit circle the recurrence is stable: 0 <= r_min < r_max <= 1, 0 < max_phase <= 2 pi.
        Checked on the values as given, so the message quotes them as typed."""
        if not isinstance(data, dict):
            return data
        r_min, r_max, max_phase = (data.get(k, cls.model_fields[k].default) for k in ("r_min", "r_max", "max_phase"))

        def real(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        rule = "(the ring the eigenvalue magnitudes start on: 0 <= r_min < r_max <= 1)"
        if not (real(r_max) and 0 < r_max <= 1):
            raise ConfigError(f"model.r_max={r_max!r} is not allowed; it must be a number > 0 and <= 1 {rule}.")
        if not (real(r_min) and 0 <= r_min < r_max):
            raise ConfigError(
                f"model.r_min={r_min!r} is not allowed; it must be a number >= 0 and < model.r_max={r_max!r} {rule}."
            )
        if not (real(max_phase) and 0 < max_phase <= 2 * math.pi):
            raise ConfigError(
                f"model.max_phase={max_phase!r} is not allowed; it must be a number > 0 and <= 2 pi = 6.2832 "
                "(the eigenvalue phases start uniform in [0, max_phase])."
            )
        return data


class LRULayer(nn.Module):
    """h_t = lambda * h_{t-1} + gamma * (B x_t), y_t = Re(C h_t) + D * x_t, with a complex diagonal
    lambda = exp(-exp(nu) + i exp(theta)) (stable for any nu, theta) whose magnitudes start uniform
    on the ring [r_min, r_max], and gamma = sqrt(1 - |lambda|^2) (stored as its log) keeping the
    state's scale independent of how long it remembers. Complex numbers are (re, im) real pairs.
    state: (batch, 2 * n): re then im."""

    def __init__(self, hidden: int, n: int, r_min: float, r_max: float, max_phase: float):
        super().__init__()
        u1, u2 = torch.rand(n), torch.rand(n)
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2)))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))
        magnitude = torch.exp(-torch.exp(self.nu_log.data))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - magnitude**2)))
        self.B = nn.Parameter(torch.randn(2, n, hidden) / math.sqrt(2 * hidden))  # re, im
        self.C = nn.Parameter(torch.randn(2, hidden, n) / math.sqrt(n))
        self.D = nn.Parameter(torch.randn(hidden))

    def lam(self) -> tuple[torch.Tensor, torch.Tensor]:
        magnitude, phase = torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log)
        return magnitude * torch.cos(phase), magnitude * torch.sin(phase)

    def inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma * (B x): x (..., hidden) -> (re, im) each (..., n)."""
        gamma = torch.exp(self.gamma_log)
        return gamma * (x @ self.B[0].T), gamma * (x @ self.B[1].T)

    def readout(self, hr: torch.Tensor, hi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return hr @ self.C[0].T - hi @ self.C[1].T + self.D * x  # Re(C h) + D x

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, time, hidden) -> y (batch, time, hidden), last state (batch, 2n)."""
        lr, li = self.lam()
        br, bi = self.inputs(x)
        if h0 is not None:  # fold the carried state into the first input: b_0 += lambda h_{-1}
            r, i = h0.unsqueeze(1).chunk(2, -1)
            br = torch.cat([br[:, :1] + lr * r - li * i, br[:, 1:]], 1)
            bi = torch.cat([bi[:, :1] + lr * i + li * r, bi[:, 1:]], 1)
        hr, hi = complex_scan((lr.expand_as(br), li.expand_as(bi)), (br, bi))
        return self.readout(hr, hi, x), torch.cat([hr[:, -1], hi[:, -1]], -1)

    def step(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        lr, li = self.lam()
        br, bi = self.inputs(x)
        if h is not None:
            r, i = h.chunk(2, -1)
            br, bi = br + lr * r - li * i, bi + lr * i + li * r
        return self.readout(br, bi, x), torch.cat([br, bi], -1)


class LRUCell(StackedCell):
    """Linear Recurrent Unit network: `layers` LRU blocks with as many complex state units as
    `hidden`; `options`: `LRUOptions`. state: (layers, batch, 2 * hidden), re then im."""

    Options = LRUOptions
    cost = 3  # B and C (complex: re and im) and the GLU's two halves, roughly three matrices

    def __init__(self, input_size: int, hidden: int, layers: int = 1, dropout: float = 0.0, **options: float):
        o = LRUOptions(**options)
        lrus = [LRULayer(hidden, hidden, o.r_min, o.r_max, o.max_phase) for _ in range(layers)]
        super().__init__(input_size, hidden, layers, dropout, lrus)

    @staticmethod
    def state_units(hidden: int) -> int:
        return 2 * hidden  # complex units: a real and an imaginary part each

    def timescales(self, e: torch.Tensor) -> tuple[str, torch.Tensor]:
        """|lambda| of the first layer: input-independent."""
        lr, li = self.blocks[0].recurrence.lam()
        return "|lambda|", torch.sqrt(lr**2 + li**2)


CELL = LRUCell
