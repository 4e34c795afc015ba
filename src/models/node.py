"""The model node (conf/model/*.yaml): RecurrentNet's options, declared once with their defaults,
plus the options of the chosen cell (its own `Options`, src/models/cells/).

    net_kwargs = check_model(cfg.model, task)   # the network's keyword arguments, topology resolved

The cells and topologies are read from their registries; nothing here names one. Checking the
common keys and the cell's name imports no torch; the chosen cell's options and the topology's
needs are read from their classes (which import torch).

Defaults are written once, here and in each cell's `Options`: `register()` stores `Model`'s in
Hydra's ConfigStore as `model/common/recurrent_net`, which every conf/model yaml names first, so
the keys exist in the composed config (`model.hidden=8` needs no `+`); a cell's yaml lists its own
options as null ("the cell's default", filled from its `Options` here), for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from src.models import cells
from src.schema import ConfigError, Node, PosInt, check

NET = "src.models.RecurrentNet"


class Model(Node):
    """The keys every model takes. `topology`: a name of src/models/topologies.py or `auto` (`last`
    for one target, `aligned` for a block); `attention`: the score of topology `attention` (dot:
    d.h, general: d.Wh; null: general); `init`: keras (glorot/orthogonal, forget bias 1, as the
    tutorials) or torch (PyTorch's defaults); `tbptt`: stateful tasks only, the gradient truncation
    length in steps; `embedding_dim`: task.encoding=embedding only."""

    cell: Literal[tuple(cells.names())] = "lstm"
    hidden: PosInt = 50
    layers: PosInt = 1
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    topology: str = "auto"
    embedding_dim: PosInt = 16
    init: Literal["keras", "torch"] = "keras"
    tbptt: PosInt = 1
    attention: Literal["dot", "general"] | None = None


@cache
def schema(cell: str) -> type[Model]:
    """The model node of cell `cell`: the common keys and the cell's own options."""
    return create_model(f"Model_{cell}", __base__=(Model, cells.get(cell).Options))


def check_model(model: Mapping[str, Any] | Any, task: Any) -> dict[str, Any]:
    """Validate the `model` node for `task` (its framing, out_len and statefulness choose and
    constrain the topology); return the keyword arguments of the network (`_target_` included)."""
    m = dict(model)
    target = m.pop("_target_", NET)
    common = {k: v for k, v in m.items() if k in Model.model_fields}
    name = check(Model, "model", common).cell  # the common keys first: no cell is imported yet
    for other in cells.names():
        for key in cells.get(other).Options.model_fields:
            if key in m and m[key] is None:  # a cell's yaml lists its options as null: the cell's default
                del m[key]
            elif key in m and other != name:
                raise ConfigError(
                    f"model.{key}={m[key]!r} only applies to model.cell={other}, so it would be ignored with "
                    f"cell={name!r}; remove it or use model.cell={other}."
                )
    node = check(schema(name), "model", m)
    from src.models import topologies  # torch: the topology classes declare what they need

    topology = topologies.choose(node.topology, framing=task.framing, out_len=task.out_len, stateful=task.stateful)
    if node.attention is not None and topology != "attention":
        raise ConfigError(
            f"model.attention={node.attention!r} only applies to model.topology=attention, so it would be "
            f"ignored with topology={topology!r}; remove it or use model=attention."
        )
    attention = (node.attention or "general") if topology == "attention" else None
    return {"_target_": target, **node.model_dump(), "topology": topology, "attention": attention}


def register() -> None:
    """Store the model node's common keys with `Model`'s defaults in Hydra's ConfigStore as
    `model/common/recurrent_net` (package `model`), which every conf/model yaml names first in its
    defaults list. Call it before composing (train.py, sweep.py, the tests' compose helpers)."""
    from hydra.core.config_store import ConfigStore

    node = {"_target_": NET, **Model().model_dump()}
    ConfigStore.instance().store(group="model/common", name="recurrent_net", node=node, package="model")
