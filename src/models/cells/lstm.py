"""lstm: the LSTM (PyTorch's fused nn.LSTM); its state is (h, c)."""

from __future__ import annotations

import torch
from torch import nn

from src.models.cells._torch import TorchCell


class LSTMCell(TorchCell, nn.LSTM):
    """LSTM. state: (h, c), each (layers, batch, hidden)."""

    cost = 4  # input, forget, cell and output gates

    @staticmethod
    def state_units(hidden: int) -> int:
        return 2 * hidden  # h and c

    def timescales(self, e: torch.Tensor) -> tuple[str, torch.Tensor]:
        """The forget gate f_t (gate order i, f, g, o), averaged over the data."""
        return "forget gate", self.gate(e, 1).mean(dim=(0, 1))


CELL = LSTMCell
