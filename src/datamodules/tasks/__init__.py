"""Task families that are whole units: one file each owns its config schema and rules, its batch
generation, its input/output spec and its memoryless baseline, found by `task.family`.

A family is a frozen pydantic model extending `Task` (base.py), so the trainer, the network
builder and the memory estimate read it like any task:
- its config fields declared once, with types, ranges, choices and defaults (the defaults Hydra
  composes come from them: `register`), and its cross-field rules as model validators raising
  ConfigError with one sentence; derived shapes (context, out_len, vocab...) are properties; the
  model's `tbptt` reaches a validator as `info.context["tbptt"]` (it matters to stateful tasks only);
- `batch(gen, batch) -> (x, y, mask)`: a whole batch on the generator's device, no per-sample loop;
- `targets(x) -> (y, mask)`: the targets of inputs x, for predict.py;
- `chance() -> dict`: the memoryless baseline of every metric, its formula in the docstring (or
  `chance_on(y, mask)` where it is measured on the evaluation set: a stream task's regression);
- optionally `loss_on_every_step`, `features` with `encoding="features"` (real-valued inputs
  (batch, time, features)), `parse(words)` (predict.py's typed input, when it is not one integer
  per step) and, for a stateful task, `sequences(gen, rows)`.
`echo` (uniform streams) and `progression` (arithmetic ones) are the stream tasks of the tutorials.
Adding a family is one file here whose module-level `TASK` names its class, plus one yaml in
conf/task whose defaults list starts with `/task/family@task: <file name>`; nothing else is edited.

Module imports stay light (pydantic, no torch: generation imports it inside its functions), so
`register()` and a config check cost no torch import.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from pydantic_core import PydanticUndefined

from src.datamodules.tasks.base import Task
from src.schema import ConfigError, check

__all__ = ["Task", "defaults", "family", "make_task", "names", "register"]


def names() -> list[str]:
    """The families: the modules of this package (but `base`), in alphabetical order."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "base")


def family(name: Any) -> type[Task]:
    """The task class of family `name`: `TASK` of module `src.datamodules.tasks.<name>`."""
    known = names()
    if name not in known:
        raise ConfigError(f"task.family={name!r} is not allowed; choose one of: {', '.join(known)}.")
    return importlib.import_module(f"{__name__}.{name}").TASK


def make_task(node: Mapping[str, Any], tbptt: int = 1) -> Task:
    """Validate the `task` config node and freeze it as its family's class. A config saved before
    families (resume, eval.py) has no `task.family`: `progression` for an arithmetic stream, `echo`
    otherwise. `tbptt` (the model's) fills a stateful task's null `task.chunk`."""
    g = dict(node)
    name = g.get("family") or ("progression" if g.get("stream") == "arithmetic" else "echo")
    return check(family(name), "task", g, tbptt=tbptt)


def defaults(name: str) -> dict[str, Any]:
    """Family `name`'s fields and their defaults, as its class declares them ('???', Hydra's
    missing value, for a field without one)."""
    fields = family(name).model_fields
    return {k: "???" if f.default is PydanticUndefined else f.default for k, f in fields.items()}


def register() -> None:
    """Store each family's defaults in Hydra's ConfigStore as `task/family/<name>` (package `task`),
    which every conf/task yaml names first in its defaults list, so the keys exist in the composed
    config (`task.lag=3` needs no `+`) with the values the family's class declares. Call it before
    composing (train.py, sweep.py, the tests' compose helpers)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name in names():
        store.store(group="task/family", name=name, node=defaults(name), package="task")
