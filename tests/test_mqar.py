"""Zoology's MQAR as a family (src/datamodules/tasks/mqar.py): its batches' statistics against a
reference generator written here per sample in plain numpy from the description (distinct keys and
values from the two halves of the vocabulary, every key queried, power-law gaps, random filler),
its rules, and a real train.py run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from src.datamodules.generate import generator, make_batch
from src.datamodules.tasks import make_task
from src.schema import ConfigError
from tests.conftest import run_cli

SMALL = {"family": "mqar", "vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4}  # 12 query slots


def reference(rng: np.random.Generator, v: int, n: int, p: int, a: float) -> tuple[np.ndarray, ...]:
    """One row, step by step: pairs, then each key at a power-law gap, filler elsewhere. Returns the
    input, the target row over the whole sequence (-1 where masked) and the gaps, key by key."""
    half, space = v // 2, (n - 2 * p) // 2
    keys = rng.choice(np.arange(1, half), size=p, replace=False)
    values = rng.choice(np.arange(half, v), size=p, replace=False)
    w = np.array([a * (g + 1) ** (a - 1) for g in range(space)])
    gaps = rng.choice(space, size=p, replace=False, p=w / w.sum())
    x, y = np.full(n, -1), np.full(n, -1)
    for i in range(p):
        x[2 * i], x[2 * i + 1] = keys[i], values[i]
        x[2 * p + 2 * gaps[i]] = keys[i]
        y[2 * p + 2 * gaps[i]] = values[i]
    for t in range(n):
        if x[t] < 0:
            x[t] = rng.integers(v)
    return x, y, gaps


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def test_batches_have_the_reference_generators_statistics():
    task = make_task(SMALL)
    v, n, p = 64, 32, 4
    x, y, mask = make_batch(task, generator("cpu", 0), 20_000)
    assert (task.context, task.out_len, task.vocab, task.space) == (32, 24, 64, 12)
    keys, values = x[:, 0 : 2 * p : 2], x[:, 1 : 2 * p : 2]
    # keys and values from disjoint halves, distinct within a row
    assert ((keys >= 1) & (keys < v // 2)).all() and ((values >= v // 2) & (values < v)).all()
    assert (keys.sort(1).values.diff(1) > 0).all() and (values.sort(1).values.diff(1) > 0).all()
    # every key queried exactly once, at an even offset of the query region, its value the target
    assert (mask.sum(1) == p).all() and not mask[:, 1::2].any() and (y[~mask] == 0).all()
    region = x[:, 2 * p :]
    asked = region[mask].view(-1, p)
    assert torch.equal(asked.sort(1).values, keys.sort(1).values)
    slot = mask.nonzero()[:, 1].view(-1, p)
    answer = values.gather(1, (region.gather(1, slot)[:, :, None] == keys[:, None, :]).int().argmax(-1))
    assert torch.equal(y[mask].view(-1, p), answer)

    rng = np.random.default_rng(0)
    ref = [reference(rng, v, n, p, 0.01) for _ in range(4000)]
    rx, ry = np.stack([r[0] for r in ref]), np.stack([r[1] for r in ref])
    # the gaps: all of them, and the first pair's (drawn first, so it sits closest)
    ours_all, ref_all = slot.flatten().numpy() // 2, (np.nonzero(ry[:, 2 * p :] >= 0)[1]) // 2
    first = (region == keys[:, :1]) & mask
    ours_first = first.int().argmax(1).numpy() // 2
    ref_first = np.array([r[2][0] for r in ref])
    for ours, theirs in ((ours_all, ref_all), (ours_first, ref_first)):
        crit = 1.95 * np.sqrt((len(ours) + len(theirs)) / (len(ours) * len(theirs)))  # KS, alpha 0.001
        assert ks_statistic(ours, theirs) < crit
    assert np.bincount(ours_all, minlength=12)[0] / len(ours_all) == pytest.approx(
        np.bincount(ref_all, minlength=12)[0] / len(ref_all), abs=0.02
    )
    # filler: uniform over the whole vocabulary, so it holds presented keys (about p / v of it)
    is_filler = torch.ones_like(x, dtype=torch.bool)
    is_filler[:, : 2 * p] = False
    is_filler[:, 2 * p :] &= ~mask
    holds_key = (x[:, :, None] == keys[:, None, :]).any(-1) & is_filler
    ours_rate = holds_key.sum().item() / is_filler.sum().item()
    rfill = np.ones_like(rx, dtype=bool)
    rfill[:, : 2 * p] = False
    rfill &= ry < 0
    ref_rate = ((rx[:, :, None] == rx[:, None, 0 : 2 * p : 2]).any(-1) & rfill).sum() / rfill.sum()
    assert (
        ours_rate > 0 and ours_rate == pytest.approx(ref_rate, abs=0.01) and ours_rate == pytest.approx(p / v, abs=0.01)
    )
    assert x[is_filler].float().mean().item() == pytest.approx(rx[rfill].mean(), abs=1.0)


def test_power_a_one_gives_uniform_gaps_and_no_random_filler_leaves_zeros():
    task = make_task({**SMALL, "power_a": 1.0, "random_non_queries": False})
    x, _, mask = make_batch(task, generator("cpu", 1), 20_000)
    gaps = mask.nonzero()[:, 1] // 2
    freq = torch.bincount(gaps, minlength=12).double() / len(gaps)
    assert torch.allclose(freq, torch.full((12,), 1 / 12, dtype=torch.float64), atol=0.01)
    region = x[:, 8:]
    assert (region[~mask] == 0).all()


def test_chance_is_the_input_blind_baseline():
    task = make_task(SMALL)
    _, y, mask = make_batch(task, generator("cpu", 2), 20_000)
    freq = torch.bincount(y[mask], minlength=64).double() / mask.sum()
    blind_loss = -(freq[freq > 0] * freq[freq > 0].log()).sum().item()  # best input-blind cross-entropy
    assert task.chance()["loss"] == pytest.approx(np.log(32)) and blind_loss == pytest.approx(np.log(32), rel=1e-3)
    assert task.chance()["acc"] == pytest.approx(freq.max().item(), abs=0.003)


def test_targets_of_a_typed_input_answer_each_query_slot_that_holds_a_key():
    task = make_task({"family": "mqar", "vocab_size": 16, "input_seq_len": 16, "num_kv_pairs": 2})
    # pairs (3, 9) (5, 12); query region: 5 at offset 0, 3 at offset 4, 3 at odd offset 5 (filler)
    x = torch.tensor([[3, 9, 5, 12, 5, 1, 7, 0, 3, 3, 2, 2, 2, 2, 2, 2]])
    y, mask = task.targets(x)
    assert mask.nonzero()[:, 1].tolist() == [0, 4] and y[mask].tolist() == [12, 9]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"num_kv_pairs": 9},
            "task.num_kv_pairs=9 is not allowed; the pairs and a query slot per key need task.input_seq_len >= "
            "4 num_kv_pairs = 36 (it is 32).",
        ),
        (
            {"vocab_size": 8, "num_kv_pairs": 4},
            "task.num_kv_pairs=4 is not allowed; distinct keys come from tokens 1..3 (task.vocab_size=8), so "
            "num_kv_pairs <= 3.",
        ),
        (
            {"input_seq_len": 33},
            "task.input_seq_len=33 is not allowed; it must be even (query slots alternate with filler).",
        ),
        ({"power_a": 0.0}, "task.power_a=0.0 is not allowed; it must be a number > 0."),
    ],
)
def test_settings_that_do_not_fit_are_refused_in_one_sentence(overrides, message):
    with pytest.raises(ConfigError) as err:
        make_task({**SMALL, **overrides})
    assert str(err.value) == message


def test_train_runs_and_refuses_through_the_command_line(tmp_path):
    r = run_cli("task=mqar", "task.num_kv_pairs=17", cwd=tmp_path)
    assert r.returncode == 2 and "task.num_kv_pairs=17 is not allowed; the pairs and a query slot" in r.stderr
    r = run_cli("task=mqar", "debug=fast", "hardware.threads=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (metrics,) = tmp_path.glob("outputs/runs/*mqar*/metrics.json")
    test = json.loads(metrics.read_text())
    assert "test/acc" in json.dumps(test)
