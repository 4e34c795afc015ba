"""What every cell shares: the state type and the options schema of a cell that has none."""

from __future__ import annotations

import torch

from src.schema import Node

State = torch.Tensor | tuple[torch.Tensor, ...] | None


class NoOptions(Node):
    """The options of a cell that reads none beyond the model node's common keys."""
