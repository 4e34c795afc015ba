"""Plain networks (src/models/recurrent.py), their cells (cells/) and topologies (topologies.py), and
the model node's schema (node.py). `RecurrentNet` (the model yamls' `_target_`) is imported on first
use, so checking the model node's common keys imports no torch."""

from __future__ import annotations

from typing import Any

__all__ = ["RecurrentNet"]


def __getattr__(name: str) -> Any:
    if name == "RecurrentNet":
        from src.models.recurrent import RecurrentNet

        return RecurrentNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
