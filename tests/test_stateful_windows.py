"""Stateful windows (issue 11), Keras' stateful layer as the tutorials ran S2-S5: one sequence's
windows served in order in batches, row i of batch k+1 starting from the detached final state of
row i of batch k, reset at each new sequence; validation in the same layout; a target outside the
window only behind task.target_outside_window=true."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from src.datamodules.generate import generator, make_batch
from src.datamodules.sequence_datamodule import SequenceDataModule
from src.lit_models.sequence_module import SequenceModule
from src.run import build_net, train, validate
from src.schema import ConfigError
from tests.conftest import make_cfg
from tests.test_regression_bits_stateful import StateRecorder

WINDOWS = ["task=echo_lag", "task.stateful=true", "task.windows_per_sequence=6", "model.hidden=8"]


def frozen_fit(cfg, batches: int, val_check_interval: int) -> tuple[SequenceModule, SequenceDataModule, list]:
    """Fit with lr 0 (the weights stay as built), recording each batch's entry and exit state."""
    task, net_kwargs, _ = validate(cfg)
    module = SequenceModule(build_net(task, net_kwargs), task, optimizer=instantiate(cfg.optim.optimizer, lr=0.0))
    dm = SequenceDataModule(task, 2, batches_per_epoch=batches, val_size=12, test_size=12)
    rec = StateRecorder()
    trainer = pl.Trainer(max_epochs=1, val_check_interval=val_check_interval, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[rec])  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return module, dm, rec.seen


def test_row_i_of_the_next_batch_starts_from_row_i_and_a_new_sequence_from_zero(cfg_factory):
    # 6 windows per sequence in batches of 2: 3 batches a sequence; a validation after batch 4 (in
    # the middle of the second sequence) must leave the training state alone
    module, _, seen = frozen_fit(cfg_factory(*WINDOWS, "data.batch_size=2"), batches=9, val_check_interval=4)
    assert [s["reset"] for s in seen] == [True, False, False] * 3
    with torch.no_grad():
        for k, s in enumerate(seen):
            if not s["reset"]:  # the state entering batch k is the final state of batch k - 1, row by row
                for a, b in zip(s["entry"], seen[k - 1]["exit"], strict=True):
                    torch.testing.assert_close(a, b)
            for i in range(2):
                # row i's state is the chain of row i alone, from zero at its sequence's first batch:
                # the state reaching window w comes from window w - 2, not from window w - 1
                state = None
                for j in range(k - k % 3, k + 1):
                    _, state = module.net(seen[j]["x"][i : i + 1], state)
                for a, b in zip(s["exit"], state, strict=True):
                    torch.testing.assert_close(a[:, i : i + 1], b)
            if k in (3, 6):  # a new sequence: there was a state, and it was dropped (exit = from zero)
                assert s["entry"] is not None
                _, zero_start = module.net(s["x"])
                for a, b in zip(s["exit"], zero_start, strict=True):
                    torch.testing.assert_close(a, b)
                carried = module.net(s["x"], seen[k - 1]["exit"])[1][0]
                assert not torch.allclose(carried, s["exit"][0])


def test_validation_runs_whole_sequences_in_the_training_layout(cfg_factory):
    module, dm, _ = frozen_fit(cfg_factory(*WINDOWS, "data.batch_size=2"), batches=3, val_check_interval=3)
    x, y, mask = dm.val_set  # 12 windows = 2 sequences of 6, rows (sequence, window) in order
    batches = list(dm.val_dataloader())
    assert [b[3] for b in batches] == [True, False, False]  # both sequences side by side, 2 rows each
    losses = []
    with torch.no_grad():
        for s in range(2):  # each sequence alone, as training serves it: batches of 2, state row to row
            state = None
            for j in range(3):
                rows = slice(6 * s + 2 * j, 6 * s + 2 * j + 2)
                out, state = module.net(x[rows], state)
                losses.append(module.loss(out, y[rows], mask[rows]) * 2)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=dm, verbose=False)
    metrics = trainer.callback_metrics
    assert metrics["val/loss"].item() == pytest.approx((sum(losses) / 12).item(), rel=1e-5)
    stateless = module.loss(module.net(x)[0], y, mask).item()  # every window from zero: differs
    assert metrics["val/loss"].item() != pytest.approx(stateless, rel=1e-5)


def test_a_target_outside_the_window_is_a_real_past_observation_only_behind_the_flag(cfg_factory):
    lag2 = ["task=echo_lag", "task.context=1", "task.lag=2"]
    with pytest.raises(ConfigError, match=r"exceeds task.context=1.*set task.target_outside_window=true"):
        validate(cfg_factory(*lag2))
    with pytest.raises(ConfigError, match=r"exceeds task.context=1.*set task.target_outside_window=true"):
        validate(cfg_factory(*lag2, "task.stateful=true", "task.windows_per_sequence=4", "data.batch_size=2"))
    task, _, _ = validate(cfg_factory(*lag2, "task.windows_per_sequence=8", "task.target_outside_window=true"))
    x, y, _ = make_batch(task, generator("cpu", 0), 16)  # 2 sequences of 8 one-step windows
    assert x.shape == (16, 1) and y.shape == (16, 1)
    seq = x.view(2, 8)
    assert torch.equal(y.view(2, 8)[:, 2:], seq[:, :-2])  # y(t) = x(t-2), t inside the sequence


# slow (~20 s of training): keeps CI's default run clear of its 10 minutes; the row-to-row carry it
# relies on is proved on tensors above, and the preset's full budget runs in the slow set too
@pytest.mark.slow
def test_s2_keras_batches_stay_at_chance_where_the_previous_step_state_learns(tmp_path):
    # the same 6 one-step samples per batch and the same updates; only where the state comes from
    # differs: sample t - 6 (Keras' row-to-row carry) vs sample t - 1 (one stream per row)
    budget = ["hardware.threads=1", "optim.optimizer.lr=0.01", "data.batches_per_epoch=1000", "trainer.max_epochs=1",
              "trainer.val_check_interval=1000", "data.val_size=600", "data.test_size=600", "diagnostics=false"]  # fmt: skip
    keras, _ = train(make_cfg(tmp_path / "keras", "experiment=s2_keras_batches", *budget))
    previous, _ = train(make_cfg(tmp_path / "previous", "experiment=s2_echo_lag_online", *budget))
    assert keras["test/acc"] < 0.025, keras  # chance 1%
    assert previous["test/acc"] > 0.04, previous


# -- the presets at their full budgets (README "Ignore Internal State") -------------------------
SLOW = pytest.mark.slow  # reason: each runs its source's full budget (30 s to 9 min on one CPU thread)


@SLOW
def test_s2_keras_batches_preset_stays_at_chance(cfg_factory):
    metrics, _ = train(cfg_factory("experiment=s2_keras_batches", "hardware.threads=1"))
    assert metrics["test/acc"] < 0.025 and metrics["steps"] == 8000, metrics  # measured 1.04%, chance 1%


@SLOW
def test_lag2_one_step_collapses_on_raw_integers(cfg_factory):
    metrics, _ = train(cfg_factory("experiment=s6_lag2_one_step", "hardware.threads=1"))
    assert metrics["test/pred_std"] < 1 and abs(metrics["test/pred_mean"] - metrics["chance"]["pred_mean"]) < 5


@SLOW
@pytest.mark.parametrize(
    ("extra", "low", "high"), [([], 0.0, 0.025), (["task.context=3", "task.target_outside_window=false"], 0.99, 1.0)]
)
def test_lag2_one_step_needs_context_not_one_hot(cfg_factory, extra, low, high):
    metrics, _ = train(cfg_factory("experiment=s6b_lag2_one_step_onehot", *extra, "hardware.threads=1"))
    assert low <= metrics["test/acc"] <= high, metrics
