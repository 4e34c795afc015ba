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

    def forward(self, x: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        # Under CPU autocast (bf16-mixed) nn.LSTM goes to oneDNN's bf16 kernel, which CPUs without
        # AVX512-BF16 cannot build ("could not create a primitive descriptor"): the native kernel instead
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.backends.mkldnn.flags(enabled=False):
                return super().forward(x, state)
        return super().forward(x, state)

    def timescales(self, e: torch.Tensor) -> tuple[str, torch.Tensor]:
        """The forget gate f_t (gate order i, f, g, o), averaged over the data."""
        return "forget gate", self.gate(e, 1).mean(dim=(0, 1))


CELL = LSTMCell
