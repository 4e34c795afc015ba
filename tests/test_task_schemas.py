"""Every task family's schema, driven by the registry (src/datamodules/tasks: one file per family),
refuses what pydantic's declared types refuse: an unknown key, a bool for an integer, nan for a
number, a value outside a choice; and its defaults are those Hydra composes."""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from src.datamodules.tasks import defaults, family, make_task, names
from src.schema import ConfigError


def valid(name: str) -> dict[str, Any]:
    """The family's defaults, a required integer (echo's context) set to 5."""
    return {k: 5 if v == "???" else v for k, v in defaults(name).items()}


def fields(kind: str) -> list[tuple[str, str]]:
    """(family, field) for every field of every family whose declared type is `kind`."""
    out = []
    for name in names():
        for key, info in family(name).model_fields.items():
            args = [a for a in typing.get_args(info.annotation) if a is not type(None)] or [info.annotation]
            if kind == "literal" and typing.get_origin(info.annotation) is Literal and key != "family":
                out.append((name, key))
            elif kind in ("int", "float") and args[0] is {"int": int, "float": float}[kind]:
                out.append((name, key))
    return out


@pytest.mark.parametrize("name", names())
def test_each_family_validates_its_own_defaults(name):
    task = make_task(valid(name))
    assert type(task) is family(name) and task.family == name


@pytest.mark.parametrize("name", names())
def test_each_family_refuses_an_unknown_key(name):
    with pytest.raises(ConfigError) as err:
        make_task({**valid(name), "lagg": 2})
    known = ", ".join(sorted(family(name).model_fields))
    assert str(err.value).startswith("task.lagg is not a task option, so it would be ignored")
    assert str(err.value).endswith(f"the task options are: {known}.")


@pytest.mark.parametrize(("name", "key"), fields("int"))
def test_each_integer_field_refuses_a_bool(name, key):
    with pytest.raises(ConfigError, match=rf"^task\.{key}=True is not allowed; "):
        make_task({**valid(name), key: True})


@pytest.mark.parametrize(("name", "key"), fields("float"))
def test_each_number_field_refuses_nan(name, key):
    with pytest.raises(ConfigError, match=rf"^task\.{key}=nan is not allowed; it must be a number"):
        make_task({**valid(name), key: math.nan})


@pytest.mark.parametrize(("name", "key"), fields("literal"))
def test_each_choice_refuses_a_value_outside_it(name, key):
    choices = typing.get_args(family(name).model_fields[key].annotation)
    with pytest.raises(ConfigError) as err:
        make_task({**valid(name), key: "gaussian"})
    assert str(err.value) == f"task.{key}='gaussian' is not allowed; choose one of: {', '.join(choices)}."


def test_the_registry_finds_fields_of_every_kind():
    """The parametrized tests above run on something: the stream families declare a number and
    choices, every family an integer."""
    assert {n for n, _ in fields("int")} == set(names())
    assert fields("float") and fields("literal")


def test_the_family_not_the_stream_decides_the_class():
    """`task.stream` used to pick the class over `task.family` (family echo with an arithmetic stream
    trained a progression); now a stream that disagrees with its family is refused, and only a
    config saved without `family` is read by its stream."""
    progression = {"stream": "arithmetic", "context": 3}
    assert make_task(progression).family == "progression"
    with pytest.raises(ConfigError) as err:
        make_task(
            {**progression, "family": "echo", "transform": "next", "encoding": "scalar", "objective": "regression"}
        )
    assert str(err.value) == (
        "task.stream='arithmetic' is not allowed with task.family=echo, which generates uniform streams; use "
        "stream=uniform, or family=progression for arithmetic streams."
    )
    with pytest.raises(ConfigError, match=r"^task\.stream='uniform' is not allowed with task\.family=progression"):
        make_task({**progression, "family": "progression", "stream": "uniform"})


def test_only_the_stream_families_have_stream_fields():
    """The other families carry none of the echo stream's keys: not as fields, not as attributes."""
    for name in set(names()) - {"echo", "progression"}:
        task = make_task(valid(name))
        for key in (
            "stream",
            "transform",
            "step",
            "start_low",
            "start_high",
            "windows_per_sequence",
            "seq_len",
            "chunk",
        ):
            assert key not in family(name).model_fields and not hasattr(task, key), (name, key)
        assert (task.stateful, task.pad_start, task.rows_per_sequence) == (False, False, 1)


def test_every_task_yaml_composes_every_key_of_its_family(tmp_path):
    """The family's defaults come from its class through Hydra's ConfigStore, so each of its keys is
    in the composed config (`task.<key>=...` needs no `+`) while the yaml writes only its variant."""
    from tests.conftest import CONF, make_cfg

    for option in sorted(p.stem for p in (Path(CONF) / "task").glob("*.yaml")):
        cfg = make_cfg(tmp_path, f"task={option}")
        assert set(cfg.task) == set(family(cfg.task.family).model_fields), option
    cfg = make_cfg(tmp_path, "task=copy_memory", "task.symbols=3", "task.categories=4")
    assert make_task(cfg.task).context == 5 + 2 * 3
