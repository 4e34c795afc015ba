"""Every option of every config group composes and passes validation; the CLI help lists them."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.run import validate
from tests.conftest import CONF, make_cfg, run_cli

GROUPS = ["task", "model", "hardware", "logger", "callbacks", "debug", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))


def combos() -> list[tuple[str, str]]:
    return [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options():
    for group in ("task", "model", "hardware", "logger", "callbacks", "debug", "experiment"):
        assert options(group), group


@pytest.mark.parametrize(("group", "option"), combos())
def test_option_composes_and_validates(tmp_path, group, option):
    extra = ["model=encdec"] if (group, option) == ("task", "partial_echo") else []
    if group == "hardware" and option == "gpu":
        pytest.skip("validated in the hardware tests: needs CUDA or must refuse without it")
    cfg = make_cfg(tmp_path, f"{group}={option}", *extra)
    task, net_kwargs, world = validate(cfg)
    assert world >= 1
    if group == "task":
        assert task.name == option
    if group == "model":
        assert net_kwargs["cell"] == cfg.model.cell


def test_task_files_carry_the_documented_vocabulary(tmp_path):
    cfg = make_cfg(tmp_path, "task=partial_echo", "model=encdec")
    task, net_kwargs, _ = validate(cfg)
    assert (task.context, task.lag, task.out_len) == (5, 3, 2)
    assert net_kwargs["topology"] == "encdec"
    seq = validate(make_cfg(tmp_path, "task=echo_sequence", "task.context=7"))[0]
    assert seq.out_len == 7  # out_len follows the context


def test_help_lists_groups_and_options():
    res = run_cli("--help")
    assert res.returncode == 0
    for group in GROUPS:
        assert f"{group}:" in res.stdout
    for option in options("task") + options("model"):
        assert option in res.stdout


def test_every_task_family_file_is_reachable_through_a_task_yaml(tmp_path):
    """A family is found by its file name (`task.family=X` imports src.datamodules.tasks.X), so each
    module of the package must be the family of some conf/task yaml (named first in its defaults
    list), and an unknown one is refused with the list of files."""
    from src.datamodules.tasks import family, make_task, names
    from src.schema import ConfigError

    used = {make_cfg(tmp_path, f"task={option}").task.family for option in options("task")}
    assert set(names()) <= used, f"family files without a conf/task yaml: {set(names()) - used}"
    for name in names():
        assert family(name).__module__ == f"src.datamodules.tasks.{name}"
    with pytest.raises(ConfigError) as err:
        make_task({"family": "no_such_task"})
    assert str(err.value) == f"task.family='no_such_task' is not allowed; choose one of: {', '.join(names())}."


@pytest.mark.parametrize("option", ["arithmetic", "echo_lag", "echo_lag_online", "invert_bits"])
def test_a_saved_config_without_family_loads_as_before(tmp_path, option):
    """Runs saved before stream tasks had a family (resume and eval.py read their
    .hydra/config.yaml) have no `task.family`: an arithmetic stream is a progression, any other an echo."""
    from omegaconf import OmegaConf

    from src.datamodules.tasks import make_task

    cfg = make_cfg(tmp_path, f"task={option}")
    g = OmegaConf.to_container(cfg.task, resolve=True)
    tbptt = cfg.model.get("tbptt", 1)
    old = {k: v for k, v in g.items() if k != "family"}
    assert make_task(old, tbptt) == make_task(g, tbptt)
    assert type(make_task(old, tbptt)).__module__ == f"src.datamodules.tasks.{g['family']}"


SAVED_BEFORE_SCHEMAS = {  # .hydra/config.yaml task nodes as train.py wrote them before the family schemas
    "echo_lag_online": {"name": "echo_lag_online", "family": "echo", "stream": "uniform", "vocab": 100, "seq_len": 24,
                        "context": 24, "lag": 1, "out_len": 24, "framing": "label", "transform": "identity",
                        "encoding": "onehot", "objective": "classification", "scale": 1.0, "windows_per_sequence": 1,
                        "stateful": True, "chunk": None},
    "arithmetic": {"name": "arithmetic", "family": "progression", "stream": "arithmetic", "vocab": 100, "context": 3,
                   "lag": 0, "out_len": 1, "framing": "window", "transform": "next", "encoding": "scalar",
                   "objective": "regression", "scale": 100.0, "step": 10, "start_low": 0, "start_high": 99,
                   "windows_per_sequence": 1, "stateful": False},
    "copy_memory": {"name": "copy_memory", "family": "copy_memory", "delay": 5, "symbols": 10, "categories": 8},
}  # fmt: skip


@pytest.mark.parametrize("option", sorted(SAVED_BEFORE_SCHEMAS))
def test_a_config_saved_before_the_schemas_gives_the_task_of_today(tmp_path, option):
    """A run folder written before each family declared its schema holds the keys its yaml wrote
    then (no defaults from the family's class): eval.py and resume read it as the same task."""
    from omegaconf import OmegaConf

    from src.datamodules.tasks import make_task

    cfg = make_cfg(tmp_path, f"task={option}")
    tbptt = cfg.model.get("tbptt", 1)
    assert make_task(SAVED_BEFORE_SCHEMAS[option], tbptt) == make_task(
        OmegaConf.to_container(cfg.task, resolve=True), tbptt
    )
