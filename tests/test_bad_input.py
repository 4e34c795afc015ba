"""Invalid input stops before any training with one clear sentence and a non-zero exit."""

from __future__ import annotations

import pytest

from src.config import ConfigError
from src.run import train
from tests.conftest import run_cli

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
]


@pytest.mark.parametrize(("overrides", "words"), BAD)
def test_bad_config_raises_one_sentence(cfg_factory, overrides, words):
    with pytest.raises(ConfigError) as err:
        train(cfg_factory(*overrides))
    message = str(err.value)
    assert words in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


def test_cli_reports_bad_input_and_exits_nonzero(tmp_path):
    res = run_cli("task.lag=5", cwd=tmp_path)
    assert res.returncode == 2
    assert "error: task.lag + task.out_len = 5 + 1 = 6 exceeds task.context=5" in res.stderr
    assert "Traceback" not in res.stderr
