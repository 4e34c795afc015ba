"""The `data` node: how many samples `SequenceDataModule` draws and with which seeds, declared once.

The defaults of the keys conf/train.yaml sets live there (the root config a user reads); the
schema declares their types and ranges, and a default only for a key the yaml leaves out
(`eval_batch_size`). Rules that need the run around it (the processes that share a batch, a
stateful task's sequences) read `world` and `task` from the validation context:

    data = check(Data, "data", cfg.data, world=2, task=task)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, model_validator

from src.hardware import cores
from src.schema import ConfigError, Node, NonNegInt, PosInt, Seed

# Lightning reads an epoch's length with len(), which Python caps at sys.maxsize (2**63 - 1).
EpochLength = Annotated[
    int,
    Field(
        ge=1,
        le=sys.maxsize,
        json_schema_extra={
            "allowed": "it must be an integer >= 1 and < 2**63 (Lightning reads the epoch's length with len(), "
            "which stops at 2**63 - 1)"
        },
    ),
]


class Data(Node):
    batch_size: PosInt  # global: split over the processes under DDP
    batches_per_epoch: EpochLength
    val_size: PosInt
    test_size: PosInt
    val_seed: Seed
    test_seed: Seed
    num_workers: int = Field(
        ge=0,
        json_schema_extra={
            "allowed": f"it must be an integer from 0 to {cores()} (the CPU cores this process may use)"
        },
    )
    overfit_batches: NonNegInt
    eval_batch_size: PosInt = 4096  # rows per evaluation batch: bounds the memory of one forward pass

    @model_validator(mode="before")
    @classmethod
    def _one_each(cls, data: Any, info: ValidationInfo) -> Any:
        """Before the fields' own `>= 1`: under DDP the real bound is the number of processes."""
        world = (info.context or {}).get("world", 1)
        for key in ("val_size", "test_size") if isinstance(data, Mapping) and world > 1 else ():
            v = data.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v < world:
                raise ConfigError(f"data.{key}={v} is smaller than the {world} processes that share it.")
        return data

    @model_validator(mode="after")
    def _shares(self, info: ValidationInfo) -> Data:
        """`batch_size`, `val_size` and `test_size` are global: every process needs its share."""
        ctx = info.context or {}
        world, task = ctx.get("world", 1), ctx.get("task")
        if self.num_workers > cores():  # each worker is a process generating batches on the CPU
            raise ConfigError(
                f"data.num_workers={self.num_workers} exceeds the {cores()} CPU cores this process may use; use an "
                f"integer from 0 to {cores()} (0: generate batches on the training device)."
            )
        if self.batch_size % world:
            raise ConfigError(
                f"data.batch_size={self.batch_size} does not split over {world} processes; use a multiple of {world}."
            )
        if task is not None and task.stateful_windows:
            self._stateful_windows(task, world)
        return self

    def _stateful_windows(self, task: Any, world: int) -> None:
        """Keras' stateful windows: a batch holds consecutive windows of one sequence, so it must
        not straddle two, and every process needs whole sequences of the evaluation sets."""
        rows = self.batch_size // world
        wps = task.rows_per_sequence  # stateful windows (no pad_start): the task's windows_per_sequence
        if wps % rows:
            raise ConfigError(
                f"data.batch_size={self.batch_size} ({rows} per process) does not divide "
                f"task.windows_per_sequence={wps}: a batch of stateful windows would straddle "
                "two sequences; use a batch size that divides it."
            )
        for key in ("val_size", "test_size"):
            n_seq = -(-getattr(self, key) // wps)  # whole sequences, rounded up
            if n_seq < world:
                raise ConfigError(
                    f"data.{key}={getattr(self, key)} makes {n_seq} sequence(s) of task.windows_per_sequence={wps} "
                    f"stateful windows, fewer than the {world} processes that share them; use {key} >= {wps * world}."
                )
