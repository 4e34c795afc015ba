"""`ConfigError`, re-exported from src/schema.py for the modules that import it from here, and
the last hand-written key check (the `summary` node's, until it has a schema). Every other node
declares its schema beside its unit; src/run_config.py lists them and `validate` runs them.
"""

from __future__ import annotations

from src.schema import ConfigError  # noqa: F401  (re-exported: one error class for every check)


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
