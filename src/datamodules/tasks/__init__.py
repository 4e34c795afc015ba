"""Task families that are whole units: one file each owns its config fields and their rules, its
batch generation, its input/output spec and its memoryless baseline, found by `task.family`.

A family is a frozen dataclass extending `src.config.Task` (so the trainer, the network builder and
the memory estimate read it like any task) with
- `from_config(g: dict, tbptt: int) -> Task`: validate the `task` node (one sentence per bad value,
  ConfigError) and fill the derived fields (context, out_len, vocab...) instead of asking for them
  (`tbptt`, the model's truncation window, matters to stateful tasks only);
- `batch(gen, batch) -> (x, y, mask)`: a whole batch on the generator's device, no per-sample loop;
- `targets(x) -> (y, mask)`: the targets of inputs x, for predict.py;
- `chance() -> dict`: the memoryless baseline of every metric, its formula in the docstring (or
  `chance_on(y, mask)` where it is measured on the evaluation set: a stream task's regression);
- optionally `loss_on_every_step` (the loss averages over every step, the metrics over the masked
  ones), `features` with `encoding="features"` (real-valued inputs (batch, time, features)) and
  `parse(words)` (predict.py's typed input, when it is not one integer per step) and, for a
  stateful task, `sequences(gen, rows)`: `rows` fresh streams of `seq_len` steps, (x, y, mask).
`echo` (uniform streams) and `progression` (arithmetic ones) are the stream tasks of the tutorials.
Adding a family is one file here whose module-level `TASK` names its class, plus one yaml in
conf/task with `family: <file name>`; nothing else is edited (`family` finds the module by name).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from src.config import ConfigError


def names() -> list[str]:
    """The families: the modules of this package, in alphabetical order."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def family(name: Any) -> type:
    """The task class of family `name`: `TASK` of module `src.datamodules.tasks.<name>`."""
    known = names()
    if name not in known:
        raise ConfigError(f"task.family={name!r} is not allowed; choose one of: {', '.join(known)}.")
    return importlib.import_module(f"{__name__}.{name}").TASK
