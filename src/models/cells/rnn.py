"""rnn: the Elman network, h_t = tanh(W x_t + U h_{t-1} + b) (PyTorch's fused nn.RNN)."""

from __future__ import annotations

import torch
from torch import nn

from src.models.cells._torch import TorchCell


class RNNCell(TorchCell, nn.RNN):
    """Elman network. state: (layers, batch, hidden)."""

    cost = 1  # one weight matrix

    def timescales(self, e: torch.Tensor) -> tuple[str, torch.Tensor]:
        """No gate: the spectral radius of the recurrent matrix (a bound on how fast a small
        perturbation of the state shrinks, not a per-unit timescale)."""
        return "spectral radius", torch.linalg.eigvals(self.weight_hh_l0).abs().max().reshape(1)


CELL = RNNCell
