"""The `trainer` node: the keyword arguments of pytorch_lightning.Trainer that a config may set.

Only the keys declared here pass through `trainer` (a typo would be a TypeError from Trainer, a
supported-but-unchecked key could crash mid-run or change training silently); the ones `train`
sets from other groups are refused with where they live. conf/train.yaml holds the defaults of the
keys it sets; a key it leaves out takes Lightning's own default (None here: not passed on).
The budget rules read the data node from the validation context:

    check(Trainer, "trainer", cfg.trainer, batches_per_epoch=500, stateful=False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from src.schema import ConfigError, Node, NonNegInt, PosInt

# Trainer arguments that `train` sets from other groups (or fixes by design); a value under
# `trainer` would clash with them, so the message says where the setting lives.
TRAINER_OWNED = {
    "accelerator": "hardware.accelerator",
    "devices": "hardware.devices",
    "num_nodes": "hardware.num_nodes",
    "strategy": "hardware.strategy",
    "precision": "hardware.precision",
    "callbacks": "the callbacks group",
    "logger": "the logger group",
    "default_root_dir": "paths.output_dir",
    "plugins": "src/run.py (atomic checkpoint writes)",
    "check_val_every_n_epoch": "trainer.val_check_interval (validations count batches across epochs)",
    "reload_dataloaders_every_n_epochs": "the data module (fresh data every epoch)",
    "num_sanity_val_steps": "src/run.py (no sanity check: evaluation sets are fixed)",
    "enable_checkpointing": "the callbacks group (model_checkpoint, last_checkpoint)",
    "gradient_clip_val": "optim.grad_clip",
    "gradient_clip_algorithm": "optim.grad_clip (clipping by norm)",
    "overfit_batches": "data.overfit_batches",
    "limit_train_batches": "data.batches_per_epoch",
    "fast_dev_run": "debug=fast",
}
NO_LIMIT = "it must be an integer >= 1 or -1 (no limit)"
Limit = Annotated[int, Field(json_schema_extra={"allowed": NO_LIMIT})]
EvalLimit = int | float  # a fraction of the evaluation set, or a number of its batches


class Trainer(Node):
    max_epochs: Limit
    max_steps: Limit
    val_check_interval: Annotated[
        int,
        Field(
            ge=1,
            json_schema_extra={
                "allowed": "it must be an integer >= 1 (training batches between validations, counted across epochs)"
            },
        ),
    ]
    log_every_n_steps: PosInt
    deterministic: Literal[True, False, "warn"]
    enable_progress_bar: bool
    enable_model_summary: bool
    # absent: Lightning's default
    min_steps: NonNegInt = None
    min_epochs: NonNegInt = None
    accumulate_grad_batches: PosInt = None
    limit_val_batches: EvalLimit = None
    limit_test_batches: EvalLimit = None
    profiler: Literal["simple", "advanced", "pytorch"] | None = None
    benchmark: bool = None
    detect_anomaly: bool = None
    inference_mode: bool = None

    @model_validator(mode="before")
    @classmethod
    def _owned(cls, data: Any) -> Any:
        for key, home in TRAINER_OWNED.items():
            if isinstance(data, Mapping) and key in data:
                raise ConfigError(f"trainer.{key} is set by {home}, not under trainer; remove trainer.{key}.")
        return data

    @field_validator("deterministic", mode="before")
    @classmethod
    def _not_a_number(cls, v: Any) -> Any:
        if not isinstance(v, (bool, str)):  # 1 == True to a Literal
            raise ConfigError(f"trainer.deterministic={v!r} is not allowed; choose one of: true, false, warn.")
        return v

    @field_validator("max_epochs", "max_steps")
    @classmethod
    def _limit(cls, v: int, info: ValidationInfo) -> int:
        if v < 1 and v != -1:
            raise ConfigError(f"trainer.{info.field_name}={v!r} is not allowed; {NO_LIMIT}.")
        return v

    @field_validator("limit_val_batches", "limit_test_batches", mode="before")  # before: one sentence, not one per type
    @classmethod
    def _eval_limit(cls, v: Any, info: ValidationInfo) -> Any:
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not number or not (0 < v <= 1 if isinstance(v, float) else v >= 1):
            raise ConfigError(
                f"trainer.{info.field_name}={v!r} is not allowed; it must be a fraction in (0, 1] or a number of "
                "batches >= 1."
            )
        return v

    @model_validator(mode="after")
    def _budget(self, info: ValidationInfo) -> Trainer:
        ctx = info.context or {}
        if self.max_epochs == -1 and self.max_steps == -1:
            raise ConfigError(
                "trainer.max_epochs=-1 with trainer.max_steps=-1 would train forever; set one of them to a limit."
            )
        accumulate = self.accumulate_grad_batches or 1
        if accumulate > 1 and ctx.get("stateful"):
            raise ConfigError(
                f"trainer.accumulate_grad_batches={accumulate} is not allowed with task.stateful=true, whose training "
                "step steps the optimizer itself (model.tbptt); use 1."
            )
        # Lightning stops at max_epochs or max_steps whatever min_steps and min_epochs ask for
        if self.min_epochs is not None and self.max_epochs != -1 and self.min_epochs > self.max_epochs:
            raise ConfigError(
                f"trainer.min_epochs={self.min_epochs} exceeds trainer.max_epochs={self.max_epochs}, which stops "
                f"training first, so min_epochs would be ignored; use min_epochs <= {self.max_epochs}."
            )
        budget = self.budget(ctx.get("batches_per_epoch"))
        if budget is None:
            return self
        batches, why = budget
        if self.min_steps is not None and self.min_steps * accumulate > batches:
            raise ConfigError(
                f"trainer.min_steps={self.min_steps} exceeds the training budget of {batches // accumulate} steps "
                f"({why}), which stops training first, so min_steps would be ignored; use min_steps <= "
                f"{batches // accumulate}."
            )
        if self.val_check_interval > batches:
            raise ConfigError(
                f"trainer.val_check_interval={self.val_check_interval} exceeds the training budget of {batches} "
                f"batches ({why}), so no validation would ever run; use val_check_interval <= {batches}."
            )
        return self

    def budget(self, batches_per_epoch: int | None) -> tuple[int, str] | None:
        """(training batches, the keys that set them): the smaller of max_steps (times the batches
        one step accumulates) and max_epochs x batches_per_epoch."""
        accumulate = self.accumulate_grad_batches or 1
        limits = []
        if self.max_steps != -1:
            limits.append((self.max_steps * accumulate, f"trainer.max_steps={self.max_steps}"))
        if self.max_epochs != -1 and batches_per_epoch is not None:
            limits.append(
                (
                    self.max_epochs * batches_per_epoch,
                    f"trainer.max_epochs={self.max_epochs} x data.batches_per_epoch={batches_per_epoch}",
                )
            )
        return min(limits) if limits else None
