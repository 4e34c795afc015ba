"""mingru: minGRU (Feng et al. 2024, "Were RNNs all we needed?"), whose gates read the input only,
so each layer is a linear recurrence computed by a log-space scan, stacked in residual blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.models.cells._base import NoOptions
from src.models.cells._stack import StackedCell, log_space_scan


def g(x: torch.Tensor) -> torch.Tensor:
    """The paper's positive activation for candidate states: x + 0.5 for x >= 0, else sigmoid(x)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), computed without overflow or a log of zero (relu keeps the unused branch finite)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class MinGRULayer(nn.Module):
    """z_t = sigmoid(W_z x_t + b_z), h~_t = g(W_h x_t + b_h), h_t = (1 - z_t) h_{t-1} + z_t h~_t: the
    gates see the input only, so the recurrence is linear in h and the whole sequence is one
    log-space scan (states stay positive, g > 0). state: (batch, hidden).

    b_z starts uniform in [0, 4] (z in [0.5, 0.98]: most units start overwriting their state with
    each input), not at 0 (z = 0.5 everywhere). The one gate both writes (z) and erases (1 - z), and
    truncated BPTT (stateful training) cuts the pull to write, which comes from the targets of later
    steps, while keeping the pull to hold on for the current target: from z = 0.5 the gates drift
    shut, the state blurs many inputs together and h~ grows (task=echo_lag_online: 24% accuracy,
    loss rising from step 300). From z near 1 they open only as far as the task needs."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, 2 * hidden)  # z and h~ pre-activations
        with torch.no_grad():
            self.linear.bias[:hidden].uniform_(0.0, 4.0)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        k, pre = self.linear(x).chunk(2, -1)
        log_a, log_b = -F.softplus(k), -F.softplus(-k) + log_g(pre)  # log(1 - z), log(z h~)
        if h0 is not None:  # the carried state as a step -1 of the scan: a = 1, b = h0 (> 0)
            log_a = torch.cat([torch.zeros_like(log_a[:, :1]), log_a], 1)
            log_b = torch.cat([h0.clamp(min=1e-30).log().unsqueeze(1), log_b], 1)
            h = log_space_scan(log_a, log_b)[:, 1:]
        else:
            h = log_space_scan(log_a, log_b)
        return h, h[:, -1]

    def step(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        k, pre = self.linear(x).chunk(2, -1)
        z = torch.sigmoid(k)
        h = z * g(pre) if h is None else (1 - z) * h + z * g(pre)
        return h, h


class MinGRUCell(StackedCell):
    """minGRU network: `layers` minGRU blocks of width `hidden`. state: (layers, batch, hidden)."""

    Options = NoOptions
    cost = 2  # the gate and the candidate

    def __init__(self, input_size: int, hidden: int, layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden, layers, dropout, [MinGRULayer(hidden) for _ in range(layers)])

    @staticmethod
    def state_units(hidden: int) -> int:
        return hidden

    def timescales(self, e: torch.Tensor) -> tuple[str, torch.Tensor]:
        """1 - z_t of the first layer (h_t = (1 - z) h_{t-1} + z h~), averaged over the data."""
        k, _ = self.blocks[0].recurrence.linear(self.first_layer_input(e)).chunk(2, -1)
        return "1 - z", (1 - torch.sigmoid(k)).mean(dim=(0, 1))


CELL = MinGRUCell
