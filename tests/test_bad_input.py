"""Bad input is refused before any work, in one sentence naming the key. Driven by the declared
schemas (every declared field of every plain node given a value of the wrong type, and a key no
node has) and by the cross-field rules below; the exact message of every documented refusal is a
row of docs/bad_input.md, run by test_bad_input_table.py, and the entry points other than train.py
are held to the same refusals in test_entry_point_refusals.py."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import BaseModel

from src.datamodules.data_config import Data
from src.hardware import Hardware
from src.lit_models.optim_config import Optim
from src.lit_models.trainer_config import Trainer
from src.run import train
from src.run_config import Paths, Run, validate
from src.schema import ConfigError
from tests.conftest import run_cli

SCHEMAS = {"data": Data, "trainer": Trainer, "optim": Optim, "hardware": Hardware, "paths": Paths, "": Run}


def typed_fields() -> list[str]:
    """Every declared key whose type is not free text (a string could be a valid path or metric)
    and not a node of its own (checked by that node's schema)."""
    keys = []
    for node, schema in SCHEMAS.items():
        for name, info in schema.model_fields.items():
            types = (info.annotation, *get_args(info.annotation))
            if str in types or dict in types or any(getattr(t, "__origin__", None) is dict for t in types):
                continue
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                continue
            if name in ("optimizer", "scheduler"):  # checked through the class their _target_ names
                continue
            keys.append(f"{node}.{name}" if node else name)
    return keys


@pytest.mark.parametrize("key", typed_fields())
def test_every_declared_key_refuses_a_value_of_the_wrong_type(cfg_factory, key):
    with pytest.raises(ConfigError) as err:
        validate(cfg_factory(f"++{key}=abc"))
    assert str(err.value).startswith(f"{key}='abc' is not allowed; "), str(err.value)
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")  # one sentence


@pytest.mark.parametrize("node", [n for n in SCHEMAS if n])
def test_every_node_refuses_a_key_it_does_not_declare(cfg_factory, node):
    with pytest.raises(ConfigError) as err:
        validate(cfg_factory(f"+{node}.zzz=1"))
    article = "an" if node[0] in "aeiou" else "a"
    assert str(err.value).startswith(f"{node}.zzz is not {article} {node} option, so it would be ignored")
    assert ", ".join(sorted(SCHEMAS[node].model_fields)) in str(err.value)  # the options, read from the schema


# (overrides, words the one-sentence message must contain)
BAD = [
    (["task.lag=4", "task.out_len=2"], "exceeds task.context=5"),
    (["model.hidden=0"], "model.hidden=0"),
    (["task.context=-1"], "task.context=-1"),
    (["task.vocab=1"], "task.vocab=1"),
    (["task.encoding=binary"], "task.encoding='binary'"),
    (["model.cell=transformer"], "model.cell='transformer'"),
    (["task=partial_echo", "model.topology=last"], "model.topology='last'"),
    (["hardware=ddp", "hardware.devices=2", "data.batch_size=63"], "data.batch_size=63"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["model.dropout=1.5"], "model.dropout=1.5"),
    (["task.objective=ranking"], "task.objective='ranking'"),
    # regression, bits and stateful tasks
    (["task=echo_lag_online", "model.tbptt=0"], "model.tbptt=0"),  # gradients cannot be truncated below one step
    # tbptt longer than the batch it splits would silently truncate at the batch boundary
    (["task=echo_lag_online", "model.tbptt=4", "task.chunk=2"], "model.tbptt=4 exceeds task.chunk=2"),
    (["task=echo_lag", "model.tbptt=3"], "only applies to task.stateful=true"),  # no carried state
    # a stateful model is fed step by step: a topology that needs the whole window cannot work
    (["task=echo_lag_online", "model.topology=last"], "not allowed with task.stateful=true"),
    (["task=echo_lag_online", "model=encdec"], "not allowed with task.stateful=true"),
    # the held-out sequences must be the training sequences' length
    (["task=echo_lag_online", "task.context=12"], "task.seq_len=24 differs from task.context=12"),
    (["task=echo_lag_online", "task.seq_len=25"], "task.chunk=4 does not divide task.seq_len=25"),
    # scale only divides scalar inputs and regression targets: on a one-hot classifier it would be ignored
    (["task=echo_lag", "task.scale=100"], "task.scale=100 has no effect"),
    # progression values have no vocabulary: one-hot / classification make no sense there
    (["task=arithmetic", "task.encoding=onehot"], "no vocabulary"),
    (["task=arithmetic", "task.objective=classification"], "no vocabulary"),
    (["task=arithmetic", "task.framing=label", "task.out_len=3"], "task.framing='label' is not allowed"),
    (["task=invert_bits", "task.lag=32"], "task.lag=32 leaves no target"),
    # stateful windows (Keras' stateful layer): a batch must not straddle two sequences
    (
        ["task=echo_lag", "task.stateful=true", "task.windows_per_sequence=20", "data.batch_size=6"],
        "data.batch_size=6 (6 per process) does not divide task.windows_per_sequence=20",
    ),
    (["task=echo_lag", "task.context=1"], "or set task.target_outside_window=true"),
    # the budget: what Lightning would drop silently or never reach
    (["+trainer.min_steps=100", "trainer.max_steps=10"], "trainer.min_steps=100 exceeds the training budget of 10"),
    (["+trainer.min_steps=20000"], "(trainer.max_epochs=20 x data.batches_per_epoch=500)"),
    (["+trainer.min_epochs=21"], "trainer.min_epochs=21 exceeds trainer.max_epochs=20"),
    (["+trainer.accumulate_grad_batches=2", "trainer.max_steps=10"], "of 20 batches (trainer.max_steps=10)"),
]


@pytest.mark.parametrize(("overrides", "words"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_config_raises_one_sentence_before_any_work(cfg_factory, tmp_path, overrides, words):
    with pytest.raises(ConfigError) as err:
        train(cfg_factory(*overrides))
    message = str(err.value)
    assert words in message, message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert not (tmp_path / "run").exists()


def test_cli_reports_bad_input_and_exits_2_with_one_line(tmp_path):
    res = run_cli("task=echo_lag_online", "model.tbptt=0", "logger=none", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: model.tbptt=0 is not allowed; it must be an integer >= 1."]
    assert not list(tmp_path.glob("outputs/*/*"))
