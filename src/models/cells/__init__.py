"""Recurrent cells: the part of a network that carries memory from one timestep to the next.

A cell is one file here whose module-level `CELL` names its class, plus one yaml in conf/model;
the file's name is the cell's name (`model.cell=<file name>`), found here by name, so nothing else
in the codebase lists the cells. The class keeps the contract every topology relies on:

    cell = Cell(input_size, hidden, layers=1, dropout=0.0, **options)
    outputs, state = cell(x, state)     # x: (batch, time, input_size) -> outputs: (batch, time, hidden)
    output, state = cell.step(x, state)  # x: (batch, input_size)      -> output:  (batch, hidden)
    cell.init_weights(scheme)           # scheme: "keras" or "torch"; the network calls it once built

`state=None` starts from rest; the returned state continues the sequence, so running a sequence in
pieces (stateful training) gives the outputs of running it whole. A state is a tensor or a tuple of
tensors (its layout is the cell's own business). `forward` is the parallel form used for training;
`step` the one-timestep form; a test holds them equal.

and declares what the rest of the code asks of it (`CONTRACT`; `get` refuses a class without it):
- `Options`: a `src.schema.Node` of the options only this cell reads (the model node's keys beside
  the common ones; `NoOptions` when it has none), with their defaults and rules;
- `state_units(hidden) -> int`: the real numbers its state holds (the capacity tables' "state units");
- `cost`: weight matrices of `hidden` rows per layer, what one step costs per unit (memory estimate);
- `timescales(e) -> (kind, retention per unit)`: what its first layer keeps of its state per step,
  for encoded inputs e (batch, time, input_size) (src.diagnostics); `timescales = None` says the
  cell has no such reading.

This module imports no torch: the names come from the file names, so a bad `model.cell` is refused
at once; `get` imports the chosen file.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

CONTRACT = ("Options", "state_units", "cost", "timescales", "step", "init_weights")


def names() -> list[str]:
    """The cells: the modules of this package, in alphabetical order (`_` files are helpers)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


@cache
def get(name: str) -> Any:
    """The class of cell `name`: `CELL` of module `src.models.cells.<name>`, checked to declare the
    contract (a missing piece is a programming error, named here rather than as a KeyError later)."""
    if name not in names():
        raise KeyError(f"no cell {name!r} in src/models/cells/; the cells are: {', '.join(names())}")
    cls = importlib.import_module(f"{__name__}.{name}").CELL
    missing = [attr for attr in CONTRACT if not hasattr(cls, attr)]
    if missing:
        raise TypeError(f"cell {name!r} ({cls.__name__}) does not declare {', '.join(missing)}; see src/models/cells/")
    return cls


def state_units(cell: str, hidden: int) -> int:
    """Real numbers the state of cell `cell` with `hidden` units holds (its own `state_units`)."""
    return get(cell).state_units(hidden)
