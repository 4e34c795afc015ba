"""Plain recurrent networks: input encoder -> cell -> topology -> per-step head.

They know shapes, not tasks: x (batch, time) integers in, (batch, out_len, n_out) out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.models.cells import CELLS

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


class InputEncoder(nn.Module):
    """onehot: (b, t) -> (b, t, vocab); embedding: (b, t, dim); scalar: (b, t, 1) value / scale."""

    def __init__(self, encoding: str, vocab: int, embedding_dim: int, scale: float):
        super().__init__()
        self.encoding, self.vocab, self.scale = encoding, vocab, scale
        self.embed = nn.Embedding(vocab, embedding_dim) if encoding == "embedding" else None
        self.size = {"onehot": vocab, "embedding": embedding_dim, "scalar": 1}[encoding]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding == "onehot":
            return F.one_hot(x, self.vocab).float()
        if self.encoding == "embedding":
            return self.embed(x)
        return x.unsqueeze(-1).float() / self.scale


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise every part in the order it was built: a cell by its own `init_weights`, a linear
    layer outside the cells Keras' way (glorot-uniform weights, zero biases) for scheme `keras`."""
    for child in module.children():
        if callable(getattr(child, "init_weights", None)):
            child.init_weights(scheme)
        elif isinstance(child, nn.Linear):
            if scheme == "keras":
                nn.init.xavier_uniform_(child.weight)
                if child.bias is not None:
                    nn.init.zeros_(child.bias)
        else:
            init_weights(child, scheme)


class RecurrentNet(nn.Module):
    """Topologies (design.md): `last` (head on the final state, out_len 1), `aligned` (head on every
    step, outputs read at the last out_len steps), `encdec` (the encoder's final output repeated
    out_len times feeds a decoder, then the per-step head: Keras' RepeatVector design)."""

    def __init__(
        self,
        cell: str,
        hidden: int,
        *,
        vocab: int,
        encoding: str,
        n_out: int,
        out_len: int,
        topology: str,
        layers: int = 1,
        dropout: float = 0.0,
        embedding_dim: int = 16,
        scale: float = 1.0,
        init: str = "keras",
    ):
        super().__init__()
        self.topology, self.out_len, self.cell = topology, out_len, cell
        self.encoder = InputEncoder(encoding, vocab, embedding_dim, scale)
        make = CELLS[cell]
        self.rnn = make(self.encoder.size, hidden, layers, dropout)
        self.decoder = make(hidden, hidden, layers, dropout) if topology == "encdec" else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden, n_out)
        init_weights(self, init)

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """x: (batch, time) -> (batch, out_len, n_out), and the recurrent state after the last step."""
        h, state = self.rnn(self.encoder(x), state)
        if self.topology == "last":
            h = h[:, -1:]
        elif self.topology == "encdec":
            h, _ = self.decoder(h[:, -1:].expand(-1, self.out_len, -1))
        else:
            h = h[:, -self.out_len :] if self.out_len < h.shape[1] else h
        return self.head(self.dropout(h)), state
