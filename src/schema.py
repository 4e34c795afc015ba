"""Declared config schemas: one pydantic model per user-facing node, beside the unit it configures.

A unit declares its fields once, as a `Node` subclass (types, ranges, choices, defaults, and its
cross-field rules as `model_validator`s), and every entry point checks a node with `check(Model,
"node", data)`. pydantic does the type, range and choice checks; this module turns its error into
the project's one-sentence refusal (`ConfigError`: the key, the value given, what is allowed),
which train.py, eval.py, predict.py and sweep.py print as `error: <message>` with exit status 2,
before any work starts.

    class Data(Node):
        batch_size: PosInt = 64
        val_seed: Seed = 1
    data = check(Data, "data", cfg.data)

Conventions:
- `Literal[...]` for choices ("choose one of: a, b"); `Annotated[int, Field(ge=1)]` for ranges
  ("it must be an integer >= 1"); floats are finite (inf and nan are refused) and ints are not bools.
- `Field(json_schema_extra={"allowed": "..."})` replaces the generated "what is allowed" text where
  the rule needs words (`task.vocab`: "a stream needs at least 2 symbols (vocab >= 2)").
- A cross-field rule raises `ConfigError("<one sentence>")` inside a `model_validator`; the sentence
  is passed on unchanged.
- An unknown key (a typo such as `+task.lagg=2`) is refused, naming the node's options.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A user-supplied config value that cannot work; the message is one sentence."""


class Node(BaseModel):
    """A config node: strict types (no bool for an int, no string for a number), finite floats,
    unknown keys refused, frozen once checked."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]  # numpy's SeedSequence takes non-negative integers
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

M = TypeVar("M", bound=BaseModel)


def check(model: type[M], node: str, data: Mapping[str, Any] | Any, **context: Any) -> M:
    """Validate config node `node` (a dotted path, "" for the top level) against `model`.
    `context` reaches validators as `info.context` (e.g. the world size, the model's tbptt)."""
    given = dict(data) if isinstance(data, Mapping) else data
    try:
        return model.model_validate(given, context=context or None)
    except ValidationError as err:
        raise ConfigError(sentence(model, node, given, err)) from None


def sentence(model: type[BaseModel], node: str, given: Any, err: ValidationError) -> str:
    """One sentence for the first error pydantic found: key, value given, what is allowed."""
    e = err.errors(include_url=False)[0]
    loc = [str(p) for p in e["loc"]]
    key = ".".join(p for p in (node, *loc) if p)
    kind = e["type"]
    if kind == "value_error" and isinstance(e.get("ctx", {}).get("error"), ConfigError):
        return str(e["ctx"]["error"])
    if kind == "extra_forbidden":
        return unknown_key(node, loc, known_fields(model, loc[:-1]))
    if kind == "missing":
        return f"{key} is missing; set it (the {node or 'top-level'} options are: {', '.join(known_fields(model, loc[:-1]))})."
    value = e.get("input")
    if kind == "model_type" or kind == "dict_type":
        return f"{key}={value!r} is not allowed; it must be a mapping of keys to values."
    return f"{key}={value!r} is not allowed; {allowed(field_info(model, loc), kind)}."


def known_fields(model: type[BaseModel], path: list[str]) -> list[str]:
    for part in path:
        sub = _submodel(model.model_fields[part].annotation) if part in model.model_fields else None
        if sub is None:
            return []
        model = sub
    return sorted(model.model_fields)


def unknown_key(node: str, loc: list[str], known: list[str]) -> str:
    """`+task.lagg=2` would be ignored silently; name the node's options (and the closest one)."""
    parent = ".".join(p for p in (node, *loc[:-1]) if p)
    key = ".".join(p for p in (parent, loc[-1]) if p)
    kind = parent or "top-level"
    article = "an" if kind[0] in "aeiou" else "a"
    close = difflib.get_close_matches(loc[-1], known, n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    return (
        f"{key} is not {article} {kind} option, so it would be ignored{hint}; the {kind} options are: "
        f"{', '.join(known)}."
    )


def _submodel(annotation: Any) -> type[BaseModel] | None:
    for a in (annotation, *get_args(annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def field_info(model: type[BaseModel], loc: list[str]) -> Any:
    info = None
    for part in loc:
        if model is None or part not in model.model_fields:
            return info
        info = model.model_fields[part]
        model = _submodel(info.annotation)
    return info


def allowed(info: Any, kind: str) -> str:
    """What a field accepts, in words, read from its declaration."""
    if info is None:
        return "see its declaration"
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "allowed" in extra:
        return str(extra["allowed"])
    annotation = info.annotation
    metadata = list(info.metadata)
    args = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) is not Literal else []
    nullable = type(None) in get_args(annotation)
    base = args[0] if len(args) == 1 else annotation
    if get_origin(base) is Annotated:  # `PosInt | None`: the bounds sit inside the union
        base, *inner = get_args(base)
        metadata += [m for f in inner for m in getattr(f, "metadata", [f])]
    if get_origin(base) is Literal or get_origin(annotation) is Literal:
        choices = get_args(base if get_origin(base) is Literal else annotation)
        names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
        return f"choose one of: {names}{' (or null)' if nullable else ''}"
    if base is bool:
        return "it must be true or false"
    bounds = _bounds(metadata)
    what = (
        "an integer"
        if base is int
        else "a number"
        if base in (float, int | float)
        else f"a {getattr(base, '__name__', base)}"
    )
    text = f"it must be {what}{(' ' + bounds) if bounds else ''}"
    return f"use null or {text[len('it must be ') :]}" if nullable else text


def _bounds(metadata: list[Any]) -> str:
    parts = []
    for m in metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None and isinstance(m, (at.Ge, at.Gt, at.Le, at.Lt, at.Interval)):
                parts.append(f"{sym} {_num(v)}")
    if len(parts) == 2 and parts[0].startswith(">=") and parts[1].startswith("<") and "2**32" in parts[1]:
        return f"in [{parts[0][3:]}, 2**32)"
    return " and ".join(parts)


def _num(v: Any) -> str:
    if isinstance(v, int) and v >= 2**31 and math.log2(v).is_integer():
        return f"2**{int(math.log2(v))}"
    return f"{v:g}" if isinstance(v, float) else str(v)
