"""Every precision a config offers trains every cell on a stateless, a stateful and a regression
task, or is refused in one sentence; a 16-mixed scaler is unscaled before the stateful clip; bf16
predicts regression values in float32; mingru's scan is deterministic where CUDA's cumsum is not.
16-mixed itself needs CUDA (refused on CPU): its clip is tested with Lightning's own GradScaler
plugin on the CPU, and end to end by benchmarks/gpu_checks.sh on a CUDA machine."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from src.models.cells import names as cell_names
from src.models.cells._stack import prefix_sum, scan_sum
from src.run import build_parts, plan, train
from src.schema import ConfigError
from tests.conftest import make_cfg

TINY = ["hardware.threads=1", "trainer.max_steps=3", "trainer.val_check_interval=3", "data.batches_per_epoch=3"]
TINY += ["data.val_size=32", "data.test_size=32", "samples=0", "data.batch_size=8", "model.hidden=8"]
TASKS = {
    "stateless": ["task=echo_lag"],
    "stateful": ["task=echo_lag_online", "task.seq_len=8", "model.tbptt=2"],
    "regression": ["task=arithmetic"],
}
PRECISIONS = ["32-true", "64-true", "bf16-mixed"]
CASES = [(p, c, t) for p in PRECISIONS for c in cell_names() for t in TASKS]
# one of each precision, each task and two cell families in the default set; all of them under slow
FEW = [("64-true", "lstm", "stateful"), ("64-true", "mingru", "regression"), ("bf16-mixed", "gru", "regression")]
FEW += [("bf16-mixed", "lru", "stateful"), ("32-true", "rnn", "stateless"), ("64-true", "rnn", "stateless")]


def run_tiny(tmp_path, precision: str, cell: str, task: str, *extra: str) -> dict:
    cfg = make_cfg(tmp_path, f"model={cell}", *TASKS[task], *TINY, f"hardware.precision={precision}", *extra)
    try:
        metrics, _ = train(cfg)
    except ConfigError as err:  # a refusal: one sentence, before the run folder exists
        assert str(err).count(". ") == 0 and not (tmp_path / "run").exists(), str(err)
        return {"status": "refused"}
    return metrics


def _check(tmp_path, precision: str, cell: str, task: str) -> None:
    m = run_tiny(tmp_path, precision, cell, task)
    assert m["status"] in ("completed", "refused"), m
    if m["status"] == "completed":
        assert m["steps"] == 3 and all(k in m for k in ("test/loss", "val/loss")), m


@pytest.mark.parametrize(("precision", "cell", "task"), FEW)
def test_precision_cell_task_trains(tmp_path, precision, cell, task):
    _check(tmp_path, precision, cell, task)


@pytest.mark.slow(reason="45 tiny runs (3 precisions x 5 cells x 3 tasks, ~2 min); a representative few run by default")
@pytest.mark.parametrize(("precision", "cell", "task"), [c for c in CASES if c not in FEW])
def test_precision_matrix(tmp_path, precision, cell, task):
    _check(tmp_path, precision, cell, task)


def test_16_mixed_is_refused_on_cpu_in_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="needs a GPU"):
        train(make_cfg(tmp_path, "hardware.precision=16-mixed", *TINY))
    assert not (tmp_path / "run").exists()


def _first_update(tmp_path, clip: float, **trainer_kwargs) -> torch.Tensor:
    """The stateful (manual optimization) path's first parameter update, SGD lr 1 and a clip
    that binds, under the given precision plugins (mingru: oneDNN has no CPU fp16 LSTM)."""
    cfg = make_cfg(
        tmp_path, "model=mingru", *TASKS["stateful"], *TINY, "optim.optimizer._target_=torch.optim.SGD",
        "optim.optimizer.lr=1.0", f"optim.grad_clip={clip}", "task.lag=0",
    )  # fmt: skip
    parts = build_parts(cfg, plan(cfg))
    module, dm = parts.module, parts.dm
    before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
    trainer = pl.Trainer(
        **{"accelerator": "cpu", **trainer_kwargs}, devices=1, max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return torch.cat([p.detach().flatten().cpu() for p in module.parameters()]) - before


def test_stateful_clip_acts_on_the_unscaled_gradient(tmp_path):
    """Under a GradScaler (16-mixed's, on the CPU here) the update of a clipped SGD step is the
    clip, as in float32; clipping the scaled gradient made it clip / 65536."""
    clip = 0.01
    plain = _first_update(tmp_path / "a", clip)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaled = _first_update(tmp_path / "b", clip, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    assert plain.norm() == pytest.approx(clip, rel=1e-3)
    assert scaled.norm() == pytest.approx(clip, rel=0.05), scaled.norm()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs CUDA (benchmarks/gpu_checks.sh runs it)")
def test_16_mixed_stateful_clip_on_cuda(tmp_path):
    update = _first_update(tmp_path, 0.01, accelerator="gpu", precision="16-mixed")
    assert update.norm() == pytest.approx(0.01, rel=0.05), update.norm()


def test_bf16_regression_values_are_float32(tmp_path):
    """Under bf16 autocast the regression head computes in float32 from what it reads (its bf16
    output rounded values of ~2.5 by up to 0.008, 0.8 in original units at scale 100) and
    predict_values is float32."""
    cfg = make_cfg(tmp_path, "model=lstm", *TASKS["regression"], *TINY)
    module = build_parts(cfg, plan(cfg)).module.eval()
    head, seen = module.net.topology.head, []
    head.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.randint(0, 100, (64, 3))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = module(x)
        pred = module.predict_values(out)
    assert out.dtype == pred.dtype == torch.float32
    expected = torch.nn.functional.linear(seen[0].float(), head.weight, head.bias)
    assert torch.equal(out, expected) and torch.equal(pred, out.squeeze(-1) * module.task.scale)


def test_64_true_reads_onehot_and_scalar_inputs_as_float64(tmp_path):
    for task in ("stateless", "regression"):  # one-hot, then scalar inputs
        cfg = make_cfg(tmp_path / task, "model=gru", *TASKS[task], *TINY)
        net = build_parts(cfg, plan(cfg)).module.net.double()
        assert net.encoder(torch.zeros(2, 3, dtype=torch.long)).dtype == torch.float64
        assert "dtype_probe" not in net.state_dict()  # checkpoints keep their keys


def test_deterministic_prefix_sum_equals_cumsum():
    x = torch.randn(3, 37, 5, dtype=torch.float64)
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.equal(prefix_sum(x), x.cumsum(1))  # the CPU keeps cumsum
        torch.testing.assert_close(scan_sum(x), x.cumsum(1), rtol=1e-12, atol=1e-12)
        if torch.cuda.is_available():
            xc = x.cuda().requires_grad_()
            y = prefix_sum(xc)  # CUDA's cumsum would raise here
            y.sum().backward()
            torch.testing.assert_close(y.cpu(), x.cumsum(1), rtol=1e-12, atol=1e-12)
    finally:
        torch.use_deterministic_algorithms(False)
