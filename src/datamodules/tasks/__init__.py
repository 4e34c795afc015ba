"""Task families that are whole units: one file each owns its config fields and their rules, its
batch generation, its input/output spec and its memoryless baseline, found by `task.family`.

A family is a frozen dataclass extending `src.config.Task` (so the trainer, the network builder and
the memory estimate read it like any task) with
- `from_config(g: dict) -> Task`: validate the `task` node (one sentence per bad value, ConfigError)
  and fill the derived fields (context, out_len, vocab...) instead of asking for them;
- `batch(gen, batch) -> (x, y, mask)`: a whole batch on the generator's device, no per-sample loop;
- `targets(x) -> (y, mask)`: the targets of inputs x, for predict.py;
- `chance() -> dict`: the memoryless baseline of every metric, its formula in the docstring;
- optionally `loss_on_every_step` (the loss averages over every step, the metrics over the masked
  ones), `features` with `encoding="features"` (real-valued inputs (batch, time, features)) and
  `parse(words)` (predict.py's typed input, when it is not one integer per step).
The `uniform`/`arithmetic` stream tasks (src/config.py, src/datamodules/generate.py) predate this.
"""

from __future__ import annotations

from src.datamodules.tasks.adding import Adding
from src.datamodules.tasks.associative_recall import AssociativeRecall
from src.datamodules.tasks.copy_memory import CopyMemory
from src.datamodules.tasks.selective_copy import SelectiveCopy

FAMILIES = {
    "copy_memory": CopyMemory,
    "adding": Adding,
    "selective_copy": SelectiveCopy,
    "associative_recall": AssociativeRecall,
}
