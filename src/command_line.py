"""train.py's command line before Hydra reads it: the habits of lightning-hydra-template users,
answered in this project's terms.

- `group=option` with an option the group does not have (`task=echo_lags`, `model=lstn`,
  `hydra/launcher=paralel`) is refused in one sentence naming the closest options (Hydra itself
  prints its option list and config search path, 22 lines, and exits 1).
- A group `--help` lists but the defaults list leaves out (`sweep=hidden`) is added as Hydra needs
  it (`+sweep=hidden`).
- `trainer=gpu` (a template config group) is refused with the key that chooses the device here,
  `hardware=gpu`.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

from src.schema import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


@cache
def _loader():  # Hydra's own view of the groups: conf/, its plugins' configs (joblib, optuna), hydra's
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))


def _options(group: str) -> list[str]:
    from hydra.core.object_type import ObjectType

    return [o for o in _loader().get_group_options(group, ObjectType.CONFIG) if not o.startswith("_")]


def _is_group(key: str) -> bool:
    return (CONF / key).is_dir() or (key.startswith("hydra/") and _loader().repository.group_exists(key))


@cache
def _defaults() -> set[str]:
    """The groups conf/train.yaml's defaults list names (an override of any other must add it)."""
    listed = OmegaConf.to_container(OmegaConf.load(CONF / "train.yaml")).get("defaults") or []
    return {str(next(iter(d))).split("@")[0].removeprefix("override ") for d in listed if isinstance(d, dict)}


def _refuse_unknown(key: str, values: list[str]) -> None:
    for value in values:
        if (CONF / key / f"{value}.yaml").is_file():
            continue  # the fast path: Hydra's loader (~0.7 s) is asked only about a name conf/ lacks
        options = _options(key)
        if value in options or value == "null":
            continue
        close = difflib.get_close_matches(value, options, n=3, cutoff=0.5) or [
            o for o in options if o.startswith(value)
        ]
        close = close[:3]
        hint = f" (did you mean {' or '.join(filter(None, [', '.join(close[:-1]), close[-1]]))}?)" if close else ""
        raise ConfigError(f"{key}={value!r} is not allowed{hint}; choose one of: {', '.join(options)}.")


def template_habits(argv: list[str]) -> list[str]:
    """argv with the template's habits answered: raises ConfigError (one sentence) for an unknown
    config option or `trainer=<name>`; returns argv with `+` added where Hydra needs it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from src.launch import split_argv

    flags, words = split_argv(argv)
    if {"--help", "-h", "--hydra-help", "--info", "-i"} & set(flags):
        return argv
    out = list(argv)
    for i, word in enumerate(argv):
        if word not in words or word.startswith("~"):
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([word])
        except HydraException:
            continue  # Hydra says what is wrong with the syntax itself
        key = override.key_or_group
        value = override.value()
        if key == "trainer" and override.package is None and isinstance(value, str):
            raise ConfigError(
                f"trainer={value!r} is not allowed; this project chooses the device with hardware=<name> (e.g. "
                f"hardware=gpu; choose one of: {', '.join(_options('hardware'))}), and trainer.<key>=<value> sets "
                "an argument of Lightning's Trainer."
            )
        if override.package is None and _is_group(key):
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [value]
            if all(isinstance(v, str) for v in values):
                _refuse_unknown(key, values)
            if not word.startswith("+") and "/" not in key and key not in _defaults():
                out[i] = "+" + word  # `sweep=hidden` as --help lists it
    return out
