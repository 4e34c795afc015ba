"""PyTorch's fused cells (nn.RNN/LSTM/GRU) as cells: batch-first construction, a step form, Keras'
initialisation, and the gate reading their timescales come from."""

from __future__ import annotations

import torch
from torch import nn

from src.models.cells._base import NoOptions, State


class TorchCell:
    """Mixin for nn.RNN/LSTM/GRU. `cost`: the gates' weight matrices (one per gate)."""

    Options = NoOptions

    def __init__(self, input_size: int, hidden: int, layers: int = 1, dropout: float = 0.0):
        inter = dropout if layers > 1 else 0.0  # PyTorch's dropout acts between layers only
        super().__init__(input_size, hidden, num_layers=layers, dropout=inter, batch_first=True)

    @staticmethod
    def state_units(hidden: int) -> int:
        return hidden

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

    def layer0_states(self, e: torch.Tensor) -> torch.Tensor:
        """h_{t-1} of the first layer for every t (zeros at t = 0): (batch, time, hidden)."""
        if self.num_layers == 1:
            h = self(e)[0]
        else:  # the outputs are the top layer's: step through time and read layer 0 from the state
            state, hs = None, []
            for t in range(e.shape[1]):
                _, state = self.step(e[:, t], state)
                hs.append((state[0] if isinstance(state, tuple) else state)[0])
            h = torch.stack(hs, 1)
        return torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)

    def gate(self, e: torch.Tensor, index: int) -> torch.Tensor:
        """sigmoid(W_i x_t + b_i + W_h h_{t-1} + b_h) of gate `index` of the first layer: (batch, time, hidden)."""
        n = self.hidden_size
        rows = slice(index * n, (index + 1) * n)
        h_prev = self.layer0_states(e)
        pre = e @ self.weight_ih_l0[rows].T + self.bias_ih_l0[rows] + h_prev @ self.weight_hh_l0[rows].T
        return torch.sigmoid(pre + self.bias_hh_l0[rows])
