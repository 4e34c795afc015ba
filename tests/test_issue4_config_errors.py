"""Bad input for the regression, bits and stateful tasks: one sentence naming the key, raised by
validation before anything is built (train() returns before a run folder exists)."""

from __future__ import annotations

import pytest

from src.config import ConfigError
from src.run import train

BAD = [
    # gradients cannot be truncated to fewer than one step
    (["task=echo_lag_online", "model.tbptt=0"], "model.tbptt=0"),
    # tbptt longer than the batch it splits would silently truncate at the batch boundary
    (["task=echo_lag_online", "model.tbptt=4", "task.chunk=2"], "model.tbptt=4 exceeds task.chunk=2"),
    # tbptt means nothing without carried state
    (["task=echo_lag", "model.tbptt=3"], "only applies to task.stateful=true"),
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
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_input_is_one_sentence_before_any_work(cfg_factory, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        train(cfg_factory(*overrides))
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")  # one sentence
    assert not (tmp_path / "run").exists()


def test_bad_tbptt_from_the_cli_exits_nonzero_with_one_line():
    from conftest import run_cli

    res = run_cli("task=echo_lag_online", "model.tbptt=0", "logger=none")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: model.tbptt=0 is not allowed; it must be an integer >= 1."], (
        res.stderr
    )
