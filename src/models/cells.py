"""Recurrent cells: the part of a network that carries memory from one timestep to the next.

The contract every cell keeps (a topology relies on nothing else):

    cell = Cell(input_size, hidden, layers=1, dropout=0.0)
    outputs, state = cell(x, state)     # x: (batch, time, input_size) -> outputs: (batch, time, hidden)
    output, state = cell.step(x, state)  # x: (batch, input_size)      -> output:  (batch, hidden)
    cell.init_weights(scheme)           # scheme: "keras" or "torch"; the network calls it once built

`state=None` starts from rest; the returned state continues the sequence, so running a sequence in
pieces (stateful training) gives the outputs of running it whole. A state is a tensor or a tuple of
tensors (its layout is the cell's own business). `forward` is the parallel form used for training;
`step` the one-timestep form; a test holds them equal.

`rnn`, `lstm`, `gru` are PyTorch's fused cells. `lru` (Orvieto et al. 2023) and `mingru` (Feng et
al. 2024) are plain PyTorch: a linear recurrence in each layer, computed over the whole sequence by
a scan, stacked in residual blocks (LayerNorm -> recurrence -> GLU -> dropout, + input) as the LRU
paper does. A new cell is one class here plus its name in `CELLS` (src.config reads its keys
from this file's source, without importing torch, so it stays a dict literal with string keys).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

State = torch.Tensor | tuple[torch.Tensor, ...] | None


# -- PyTorch's fused cells ------------------------------------------------------------------------
class TorchCell:
    """Mixin for nn.RNN/LSTM/GRU: batch-first construction, a step form, Keras initialisation."""

    def __init__(self, input_size: int, hidden: int, layers: int = 1, dropout: float = 0.0):
        inter = dropout if layers > 1 else 0.0  # PyTorch's dropout acts between layers only
        super().__init__(input_size, hidden, num_layers=layers, dropout=inter, batch_first=True)

    def step(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        out, state = self(x.unsqueeze(1), state)
        return out.squeeze(1), state

    def init_weights(self, scheme: str) -> None:
        """keras: what the tutorial recipes assume: glorot-uniform input weights, orthogonal
        recurrent weights (one block per gate), zero biases, LSTM forget-gate bias 1
        (unit_forget_bias). torch: PyTorch's defaults, as built."""
        if scheme != "keras":
            return
        for name, p in self.named_parameters():
            if name.startswith("weight_hh"):
                for block in p.data.chunk(p.shape[0] // p.shape[1], 0):  # 4 LSTM, 3 GRU, 1 RNN gates
                    nn.init.orthogonal_(block)
            elif name.startswith("weight"):
                nn.init.xavier_uniform_(p)
            else:
                nn.init.zeros_(p)
        if isinstance(self, nn.LSTM):
            for name, p in self.named_parameters():
                if name.startswith("bias_ih"):  # gate order i, f, g, o; b_hh stays 0 so the sum is 1
                    n = p.shape[0] // 4
                    p.data[n : 2 * n] = 1.0


class RNNCell(TorchCell, nn.RNN):
    """Elman network, h_t = tanh(W x_t + U h_{t-1} + b). state: (layers, batch, hidden)."""


class LSTMCell(TorchCell, nn.LSTM):
    """LSTM. state: (h, c), each (layers, batch, hidden)."""


class GRUCell(TorchCell, nn.GRU):
    """GRU. state: (layers, batch, hidden)."""


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
    a_star = log_a.double().cumsum(dim=1)
    return (a_star + (log_b.double() - a_star).logcumsumexp(dim=1)).exp().to(log_b.dtype)


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


# -- Linear Recurrent Unit (Orvieto et al. 2023) ----------------------------------------------------
class LRULayer(nn.Module):
    """h_t = lambda * h_{t-1} + gamma * (B x_t), y_t = Re(C h_t) + D * x_t, with a complex diagonal
    lambda = exp(-exp(nu) + i exp(theta)) (stable for any nu, theta) whose magnitudes start uniform
    on the ring [r_min, r_max], and gamma = sqrt(1 - |lambda|^2) (stored as its log) keeping the
    state's scale independent of how long it remembers. Complex numbers are (re, im) real pairs.
    state: (batch, 2 * n): re then im."""

    def __init__(self, hidden: int, n: int, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 2 * math.pi):
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
    `hidden`. r_min, r_max: the ring the eigenvalue magnitudes |lambda| start on, uniform in area
    (0 and 1: the whole unit disc; the paper narrows it to 0.9-0.999 for its long-range tasks, so
    that every unit starts remembering for 10-1000 steps); max_phase: the phases arg(lambda) start
    uniform in [0, max_phase] (the paper: 2 pi, or pi / 10 for its longest tasks)."""

    def __init__(
        self,
        input_size: int,
        hidden: int,
        layers: int = 1,
        dropout: float = 0.0,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
    ):
        lrus = [LRULayer(hidden, hidden, r_min, r_max, max_phase) for _ in range(layers)]
        super().__init__(input_size, hidden, layers, dropout, lrus)


# -- minGRU (Feng et al. 2024, "Were RNNs all we needed?") -------------------------------------------
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
    """minGRU network: `layers` minGRU blocks of width `hidden`."""

    def __init__(self, input_size: int, hidden: int, layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden, layers, dropout, [MinGRULayer(hidden) for _ in range(layers)])


CELLS: dict[str, type[nn.Module]] = {
    "rnn": RNNCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
    "lru": LRUCell,
    "mingru": MinGRUCell,
}
