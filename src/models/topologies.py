"""Topologies: how a network wires its cells between the encoded window and the targets.

Each is a module built as `Topology(cell, in_size, hidden, n_out, out_len, context, dropout)`, where
`cell(size)` builds a configured cell (src/models/cells/) reading `size` features per step, and
maps the encoded window to the targets:

    out, state = topology(e, state, out_len)   # e: (batch, time, in_size) -> out: (batch, out_len, n_out)

`state` is the first (encoder) cell's state: what stateful training carries to the next batch.
`out_len` is the built one except where a caller asks for another (predict.py on a label-framing
run reads one target per typed step); topologies with a fixed-size readout refuse that.
Each class also declares what it needs from the task, read by `choose` (the model node's check):
- `stateful`: it runs on a stateful task (a stream fed step by step), else it needs whole windows;
- `per_step`: None where it answers label framing (a target at every step, answered online from the
  inputs up to that step), else the reason it cannot (the end of a sentence);
- `max_targets`: the most targets it emits (None: any number);
- `has_decoder`: it builds a second cell as large as the encoder (the memory estimate counts it);
- `stepwise`: its encoder reads the window one step at a time (the diagnostics probe its states).
A new topology is one class here plus its name in `TOPOLOGIES`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from src.models.cells._base import State
from src.schema import ConfigError

MakeCell = Callable[[int], nn.Module]


class Last(nn.Module):
    """Many-to-one: a head on the final step's output (one target)."""

    stateful, has_decoder, stepwise, max_targets = False, False, True, 1
    per_step = "one head on the final state gives one target, while label framing reads a target at every step"

    def __init__(
        self, cell: MakeCell, in_size: int, hidden: int, n_out: int, out_len: int, context: int, dropout: float
    ):
        super().__init__()
        self.rnn = cell(in_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden, n_out)

    def forward(self, e: torch.Tensor, state: State, out_len: int) -> tuple[torch.Tensor, State]:
        h, state = self.rnn(e, state)
        return self.head(self.dropout(h[:, -1:])), state


class Aligned(Last):
    """A head on every step (Keras' TimeDistributed), read at the last `out_len` steps."""

    stateful, per_step, max_targets = True, None, None  # has_decoder, stepwise: Last's

    def forward(self, e: torch.Tensor, state: State, out_len: int) -> tuple[torch.Tensor, State]:
        h, state = self.rnn(e, state)
        return self.head(self.dropout(h[:, -out_len:])), state


class EncDec(nn.Module):
    """Encoder-decoder (Keras' RepeatVector recipe): the encoder's final output, repeated `out_len`
    times, is the input of a decoder that starts from rest; a head on every decoder step."""

    stateful, has_decoder, stepwise, max_targets = False, True, True, None
    per_step = (
        "its decoder reads the encoder's final output at every step, so each answer would see the whole sequence, "
        "its future included, while label framing answers each step from the inputs up to it"
    )

    def __init__(
        self, cell: MakeCell, in_size: int, hidden: int, n_out: int, out_len: int, context: int, dropout: float
    ):
        super().__init__()
        self.rnn, self.decoder = cell(in_size), cell(hidden)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden, n_out)

    def forward(self, e: torch.Tensor, state: State, out_len: int) -> tuple[torch.Tensor, State]:
        h, state = self.rnn(e, state)
        d, _ = self.decoder(h[:, -1:].expand(-1, out_len, -1))
        return self.head(self.dropout(d)), state


class Attention(nn.Module):
    """Encoder-decoder with Luong et al. (2015) global attention. The decoder starts from the
    encoder's final state and reads its final output at every step (no teacher forcing: targets
    are emitted at once). Decoder step t scores every encoder output h_s, `dot`: d_t . h_s,
    `general`: d_t . W h_s; the softmax-weighted sum c_t of the encoder outputs and d_t give the
    attentional state tanh(W_c [c_t; d_t]), which the head reads.

    Not causal, by design: the decoder starts from the encoder's final state and reads its final
    output, so even a masked attention would let every decoder step see the last input. Label
    framing (an online target at every step) is therefore refused, not masked; its causal form is a
    head on every encoder step, `aligned`."""

    stateful, has_decoder, stepwise, max_targets = False, True, True, None
    per_step = (
        "its decoder starts from the encoder's final state and attends over every encoder output, so each answer "
        "would see the whole sequence, its future included, while label framing answers each step from the inputs "
        "up to it"
    )

    def __init__(self, cell: MakeCell, in_size: int, hidden: int, n_out: int, out_len: int, context: int,
                 dropout: float, attention: str = "general"):  # fmt: skip
        super().__init__()
        self.rnn, self.decoder = cell(in_size), cell(hidden)
        self.score = nn.Linear(hidden, hidden, bias=False) if attention == "general" else nn.Identity()
        self.combine = nn.Linear(2 * hidden, hidden)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden, n_out)

    def forward(self, e: torch.Tensor, state: State, out_len: int) -> tuple[torch.Tensor, State]:
        h, state = self.rnn(e, state)  # h: (batch, time, hidden)
        d, _ = self.decoder(h[:, -1:].expand(-1, out_len, -1), state)  # (batch, out_len, hidden)
        weights = F.softmax(d @ self.score(h).transpose(1, 2), dim=-1)  # (batch, out_len, time)
        attended = torch.tanh(self.combine(torch.cat([weights @ h, d], -1)))
        return self.head(self.dropout(attended)), state


class Vector(nn.Module):
    """Many-to-one vector output: one linear layer maps the final step's output to all `out_len`
    targets at once (the tutorial's "alternate topology")."""

    stateful, has_decoder, stepwise, max_targets = False, False, True, None
    per_step = (
        "its readout emits a block of fixed size from a whole window, while label framing reads a target at every "
        "step of any length"
    )

    def __init__(
        self, cell: MakeCell, in_size: int, hidden: int, n_out: int, out_len: int, context: int, dropout: float
    ):
        super().__init__()
        self.out_len, self.n_out = out_len, n_out
        self.rnn = cell(in_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden, out_len * n_out)

    def read(self, h: torch.Tensor, out_len: int) -> torch.Tensor:
        """h: (batch, hidden) -> (batch, out_len, n_out); the readout's size is fixed when built."""
        if out_len != self.out_len:
            raise ValueError(f"this topology emits exactly {self.out_len} targets, not {out_len}.")
        return self.head(self.dropout(h)).view(h.shape[0], out_len, self.n_out)

    def forward(self, e: torch.Tensor, state: State, out_len: int) -> tuple[torch.Tensor, State]:
        h, state = self.rnn(e, state)
        return self.read(h[:, -1], out_len), state


class OneToOne(Vector):
    """The window flattened into one timestep's features (context * in_size inputs), one recurrent
    step, and the vector readout: a feed-forward network in recurrent clothing, the control arm that
    shows what the recurrence adds."""

    stepwise = False  # one step of the whole window: no per-step state to probe

    def __init__(
        self, cell: MakeCell, in_size: int, hidden: int, n_out: int, out_len: int, context: int, dropout: float
    ):
        super().__init__(lambda _: cell(in_size * context), in_size, hidden, n_out, out_len, context, dropout)
        self.context = context

    def forward(self, e: torch.Tensor, state: State, out_len: int) -> tuple[torch.Tensor, State]:
        if e.shape[1] != self.context:
            raise ValueError(f"this topology reads windows of exactly {self.context} steps, not {e.shape[1]}.")
        h, state = self.rnn(e.reshape(e.shape[0], 1, -1), state)
        return self.read(h[:, -1], out_len), state


TOPOLOGIES: dict[str, type[nn.Module]] = {
    "last": Last,
    "aligned": Aligned,
    "encdec": EncDec,
    "attention": Attention,
    "vector": Vector,
    "one_to_one": OneToOne,
}


def choose(topology: str, *, framing: str, out_len: int, stateful: bool) -> str:
    """The topology `model.topology` names for a task of this framing, target count and statefulness:
    `auto` picks `last` for a single-step window target, `aligned` otherwise; a topology that cannot
    serve the task is refused, with the reason it declares."""
    names = ("auto", *TOPOLOGIES)
    if topology not in names:
        raise ConfigError(f"model.topology={topology!r} is not allowed; choose one of: {', '.join(names)}.")
    if topology == "auto":
        return "last" if framing == "window" and out_len == 1 else "aligned"
    cls = TOPOLOGIES[topology]
    if stateful and not cls.stateful:
        raise ConfigError(
            f"model.topology={topology!r} is not allowed with task.stateful=true: it needs the whole window "
            "at once, while stateful training feeds a stream step by step; use topology=aligned."
        )
    if framing == "label" and cls.per_step is not None:
        raise ConfigError(
            f"model.topology={topology!r} is not allowed with task.framing=label: {cls.per_step}; use topology=aligned."
        )
    if cls.max_targets is not None and out_len > cls.max_targets:
        raise ConfigError(
            f"model.topology={topology!r} cannot emit task.out_len={out_len} targets (one head on the final "
            "state gives one); use topology=aligned or encdec."
        )
    return topology


def stepwise_encoder(topology: nn.Module) -> nn.Module | None:
    """The encoder cell of a topology that reads its window one step at a time (its `stepwise`), for
    the diagnostics' probes of per-step states; None otherwise (one_to_one reads the whole window
    as one step)."""
    return topology.rnn if getattr(topology, "stepwise", False) else None
