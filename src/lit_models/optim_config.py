"""The `optim` node: the optimizer and scheduler `SequenceModule` builds (`_partial_` factories it
binds to its parameters), and the gradient clip of its training step.

The optimizer and scheduler are checked through the `_target_` they name: the keys of theirs that
can break a run before the first step are declared here, every other keyword goes to the class,
whose construction (`src.run_config.build`) names a typo. Defaults live in conf/train.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from src.schema import ConfigError, Node, PosInt

# Adam moves every weight by about lr per step whatever the gradient's scale, and these networks'
# weights are O(0.1): a step of 10 already wipes them out at the first update, so a larger lr is a
# typo (1e38 overflows to inf/NaN); SGD-style optimizers are no safer at that size.
MAX_LR = 10.0
LR_RULE = f"it must be a number > 0 and <= {MAX_LR:g} (a larger step wipes out the weights at the first update)"
# Schedulers that step on a monitored metric: SequenceModule steps schedulers by count ("interval:
# step"), with no metric to give them.
METRIC_SCHEDULERS = ("ReduceLROnPlateau",)


def target_node(key: str, node: Any) -> None:
    """A node built by `hydra.utils.instantiate` must name its class."""
    if not isinstance(node, Mapping) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"{key}={node!r} is not allowed; it must be a config node with a _target_ (a class path).")


class Built(Node):
    """A node whose keys go to the class its `_target_` names: only the declared ones are checked."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False, populate_by_name=True)
    target: str = Field(alias="_target_")

    @property
    def class_name(self) -> str:
        return self.target.rsplit(".", 1)[-1]


class Optimizer(Built):
    lr: float = Field(None, gt=0, le=MAX_LR, json_schema_extra={"allowed": LR_RULE})  # absent: the class's default


class Scheduler(Built):
    # torch's count-based schedulers divide by these (0 crashes at the first step) or read them as
    # lengths; a key left out takes the class's own default (None here: pydantic does not check it)
    step_size: PosInt = None
    T_max: PosInt = None
    T_0: PosInt = None
    total_steps: PosInt = None
    total_iters: PosInt = None
    step_size_up: PosInt = None
    gamma: Annotated[float, Field(gt=0)] = None

    @model_validator(mode="after")
    def _count_based(self) -> Scheduler:
        if self.class_name in METRIC_SCHEDULERS:
            raise ConfigError(
                f"optim.scheduler={self.class_name} is not allowed; it steps on a monitored metric, while schedulers "
                "here step after every optimizer step with none; use a count-based one such as StepLR or "
                "CosineAnnealingLR."
            )
        return self


class Optim(Node):
    optimizer: Optimizer
    scheduler: Scheduler | None
    grad_clip: Annotated[float, Field(gt=0)] | None  # max gradient norm; null disables
    # clip each gradient element to [-v, v] (Arjovsky et al. 2016's T.clip, Lightning's "value"
    # algorithm), applied before the norm clip when both are set; null disables. Its default (null,
    # in conf/train.yaml) is repeated here for configs saved before the key existed (eval, resume).
    grad_clip_value: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _targets(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            target_node("optim.optimizer", data.get("optimizer"))
            if data.get("scheduler") is not None:
                target_node("optim.scheduler", data["scheduler"])
        return data
