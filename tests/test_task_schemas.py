"""Every task family's schema, driven by the registry (src/datamodules/tasks: one file per family),
refuses what pydantic's declared types refuse: an unknown key, a bool for an integer, nan for a
number, a value outside a choice; and its defaults are those Hydra composes."""

from __future__ import annotations

import math
import typing
from typing import Any, Literal

import pytest

from src.config import ConfigError
from src.datamodules.tasks import defaults, family, make_task, names


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
