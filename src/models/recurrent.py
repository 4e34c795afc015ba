"""Plain recurrent networks: input encoder -> topology (its cells and heads).

They know shapes, not tasks: x (batch, time) integers in, (batch, out_len, n_out) out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.models.cells import get as get_cell
from src.models.cells._base import State
from src.models.topologies import TOPOLOGIES


class InputEncoder(nn.Module):
    """onehot: (b, t) -> (b, t, symbols); embedding: (b, t, dim); scalar: (b, t, 1) value / scale;
    features: (b, t, features) real values, as they are. With `pad` the pad symbol (index vocab)
    is one more symbol (symbols = vocab + 1: its own one-hot channel, its own embedding row), and
    a scalar -1, outside the data's [0, (vocab - 1) / scale]."""

    def __init__(
        self, encoding: str, vocab: int, embedding_dim: int, scale: float, features: int = 1, pad: bool = False
    ):
        super().__init__()
        self.encoding, self.vocab, self.scale, self.pad = encoding, vocab, scale, pad
        self.symbols = vocab + pad
        self.embed = nn.Embedding(self.symbols, embedding_dim) if encoding == "embedding" else None
        self.size = {"onehot": self.symbols, "embedding": embedding_dim, "scalar": 1, "features": features}[encoding]
        # follows the network's dtype (64-true converts every float tensor): encoded inputs take
        # it, so a float64 network reads float64 inputs; not persistent, so no checkpoint sees it
        self.register_buffer("dtype_probe", torch.zeros(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding == "onehot":
            return F.one_hot(x, self.symbols).to(self.dtype_probe.dtype)
        if self.encoding == "embedding":
            return self.embed(x)
        if self.encoding == "features":
            return x.to(self.dtype_probe.dtype)
        v = x.unsqueeze(-1).to(self.dtype_probe.dtype) / self.scale
        return v.masked_fill(x.unsqueeze(-1) == self.vocab, -1.0) if self.pad else v


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise every part in the order it was built: a cell by its own `init_weights`, a linear
    layer outside the cells Keras' way (glorot-uniform weights, zero biases) for scheme `keras`.
    Run once the whole network is built (not in each part's constructor), so the random draws come
    in the same order for every topology and a seed gives the weights it always gave."""
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
    """Input encoder -> topology (src/models/topologies.py) wiring cells (src/models/cells/).
    The task implies vocab, encoding, n_out, out_len, context, features and scale; the model config gives the
    rest. `attention` (dot or general) is the score of topology `attention`; `pad`: inputs may hold
    the pad symbol (index vocab, task.pad_start); `cell_options` go to the cell as keywords (its
    own `Options`, e.g. the lru's r_min, r_max, max_phase)."""

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
        context: int = 1,
        features: int = 1,
        layers: int = 1,
        dropout: float = 0.0,
        embedding_dim: int = 16,
        scale: float = 1.0,
        init: str = "keras",
        attention: str | None = None,
        pad: bool = False,
        **cell_options: float,
    ):
        super().__init__()
        self.out_len, self.cell = out_len, cell
        self.encoder = InputEncoder(encoding, vocab, embedding_dim, scale, features, pad)
        options = {"attention": attention} if attention else {}
        self.topology = TOPOLOGIES[topology](
            lambda size: get_cell(cell)(size, hidden, layers, dropout, **cell_options),
            self.encoder.size, hidden, n_out, out_len, context, dropout, **options,
        )  # fmt: skip
        init_weights(self, init)
        # checkpoints written before topologies were modules name their parts rnn., decoder., head.
        self._register_load_state_dict_pre_hook(_legacy_names)

    def forward(self, x: torch.Tensor, state: State = None, out_len: int | None = None) -> tuple[torch.Tensor, State]:
        """x: (batch, time) -> (batch, out_len, n_out), and the recurrent state after the last step.
        out_len: the targets to emit, if not the built `out_len` (a label-framing prediction)."""
        return self.topology(self.encoder(x), state, out_len or self.out_len)


def _legacy_names(state: dict, prefix: str, *args) -> None:
    for key in [k for k in state if k.startswith((f"{prefix}rnn.", f"{prefix}decoder.", f"{prefix}head."))]:
        state[f"{prefix}topology.{key.removeprefix(prefix)}"] = state.pop(key)
