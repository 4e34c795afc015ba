"""Config checks: every user-facing key is validated here, before anything is built.

Each failure is one sentence naming the key, the value given and what is allowed, raised as
`ConfigError` so that `train.py` can print it and exit non-zero before any work starts.
"""

from __future__ import annotations

import math
from typing import Any

from src.schema import ConfigError  # noqa: F401  (re-exported: one error class for every check)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}.")
    return value


def _int(key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}={value!r} is not allowed; it must be an integer >= {low}.")
    return value


def _float(key: str, value: Any, low: float, high: float = math.inf, low_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value < high
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        upper = f" and < {high}" if math.isfinite(high) else ""
        raise ConfigError(f"{key}={value!r} is not allowed; it must be a number {bound}{upper}.")
    return float(value)


def check_known_keys(node: str, given: dict, known: set[str]) -> None:
    """A key the code never reads (a typo such as `+task.lagg=2`) would be ignored silently.
    node: the dotted path of the node, or "" for the top level of the config."""
    unknown = sorted(set(given) - known)
    if unknown:
        key, kind = (f"{node}.{unknown[0]}", node) if node else (unknown[0], "top-level")
        article = "an" if kind[0] in "aeiou" else "a"
        raise ConfigError(
            f"{key} is not {article} {kind} option, so it would be ignored; the {kind} options are: {', '.join(sorted(known))}."
        )
