"""Plain recurrent networks: input encoder -> cell -> topology -> per-step head.

They know shapes, not tasks: x (batch, time) integers in, (batch, out_len, n_out) out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
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


def keras_init(module: nn.Module) -> None:
    """Keras defaults the tutorial recipes assume: glorot-uniform input and dense weights,
    orthogonal recurrent weights, zero biases, LSTM forget-gate bias 1 (unit_forget_bias)."""
    for name, p in module.named_parameters():
        if "weight_hh" in name:
            gates = p.shape[0] // p.shape[1]  # 4 for LSTM, 3 for GRU, 1 for RNN: one block per gate
            for block in p.data.chunk(gates, 0):
                nn.init.orthogonal_(block)
        elif "weight" in name and p.dim() == 2 and not name.startswith("encoder.embed"):
            nn.init.xavier_uniform_(p)
        elif "bias" in name:
            nn.init.zeros_(p)
    for rnn in (m for m in module.modules() if isinstance(m, nn.LSTM)):
        for name, p in rnn.named_parameters():
            if name.startswith("bias_ih"):  # gate order i, f, g, o; b_hh stays 0 so the sum is 1
                n = p.shape[0] // 4
                p.data[n : 2 * n] = 1.0


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
        rnn = CELLS[cell]
        inter = dropout if layers > 1 else 0.0
        self.rnn = rnn(self.encoder.size, hidden, num_layers=layers, dropout=inter, batch_first=True)
        self.decoder = (
            rnn(hidden, hidden, num_layers=layers, dropout=inter, batch_first=True) if topology == "encdec" else None
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden, n_out)
        if init == "keras":
            keras_init(self)

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
