"""gru: the GRU (PyTorch's fused nn.GRU)."""

from __future__ import annotations

import torch
from torch import nn

from src.models.cells._torch import TorchCell


class GRUCell(TorchCell, nn.GRU):
    """GRU. state: (layers, batch, hidden)."""

    cost = 3  # reset, update and candidate

    def timescales(self, e: torch.Tensor) -> tuple[str, torch.Tensor]:
        """The update gate z_t (h_t = (1 - z) n + z h_{t-1}; gate order r, z, n), averaged over the data."""
        return "update gate", self.gate(e, 1).mean(dim=(0, 1))


CELL = GRUCell
