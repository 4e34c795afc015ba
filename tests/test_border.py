"""`sweep.py border`: the gallop-then-bisect search against a fake solver, and a tiny real search
checked against a grid over the same sizes built from the same job results."""

from __future__ import annotations

import csv
import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sweep
from src import border
from src.sweeps import wilson
from tests.run_helpers import snapshot


def counted(threshold: int, cache: dict[int, bool] | None = None):
    """A monotone fake solver (solves from `threshold` up) that counts the sizes it trains."""
    cache = {} if cache is None else cache
    trained: list[int] = []

    def solves(h: int) -> bool:
        if h not in cache:
            trained.append(h)
            cache[h] = h >= threshold
        return cache[h]

    return solves, trained


def test_gallop_bisect_finds_every_threshold_in_log_steps_and_reuses_cached_results():
    bound = 2 * math.ceil(math.log2(64 - 2 + 1)) + 1  # 13 sizes, against 63 for the grid 2..64
    for t in range(2, 65):
        cache: dict[int, bool] = {}
        solves, trained = counted(t, cache)
        found, failing = border.gallop_bisect(2, 64, solves)
        assert (found, failing) == (t, t - 1 if t > 2 else None)
        assert len(trained) == len(set(trained)) <= bound, (t, trained)
        again, retrained = counted(t, cache)  # a resumed search: every size it asks is known
        assert border.gallop_bisect(2, 64, again) == (found, failing) and retrained == []
    solves, trained = counted(100)
    assert border.gallop_bisect(2, 64, solves) == (None, 64) and trained == [2, 4, 8, 16, 32, 64]


def test_wilson_interval():
    assert wilson(0, 1) == pytest.approx((0.0, 0.793), abs=1e-3)
    assert wilson(2, 2) == pytest.approx((0.342, 1.0), abs=1e-3)
    assert wilson(5, 10) == pytest.approx((0.237, 0.763), abs=1e-3)


@pytest.mark.parametrize(
    "args, says",
    [
        (["model=foo"], "model=foo is not a cell"),
        (["border.min=0"], "border.min=0 must be positive"),
        (["border.share=0"], "border.share=0.0 must lie in (0, 1]"),
        (["border.share=1.2"], "border.share=1.2 must lie in (0, 1]"),
        (["border.min=8", "border.max=4"], "border.min=8 is above border.max=4"),
        (["task.lag=12"], "task.lag=12 model.hidden=2 would fail"),
        (["task.vocab=1,10"], "task.vocab=1,10 must be whole numbers of at least 2"),
    ],
)
def test_bad_input_is_one_sentence_before_any_job(tmp_path, capsys, args, says):
    assert sweep.main(["border", f"border.dir={tmp_path / 'b'}", *args]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


TINY = [
    "model=lstm",
    "task.lag=1",
    "seed=0",
    "border.min=2",
    "border.max=16",
    "task.vocab=10",
    "task.context=3",
    "trainer.max_steps=400",
    "data.val_size=200",
    "data.test_size=200",
]


def test_tiny_real_search_agrees_with_a_grid_over_the_same_sizes(tmp_path, capsys):
    folder = tmp_path / "border"
    assert sweep.main(["border", f"border.dir={folder}", *TINY]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader((folder / "border.csv").open()))
    assert len(rows) == 1 and rows[0]["vocab"] == "10" and rows[0]["bits demanded"] == "3.3"  # 1 x log2(10)
    found = int(rows[0]["smallest solving hidden"])
    visited = [int(h) for h in rows[0]["sizes run (in order)"].split(", ")]
    assert len(visited) < 15 - 5  # fewer jobs than the grid's 15
    assert ["lstm", "10", "1", str(found)] in [ln.split()[:4] for ln in out.splitlines()]  # printed too

    # The plot and the table, as TensorBoard serves them from the border folder.
    assert (folder / "border.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    served = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    served.Reload()
    (image,) = served.Images("sweep/border")
    assert image.encoded_image_string == (folder / "border.png").read_bytes() and image.width > image.height > 0
    assert served.SummaryMetadata("sweep/summary").plugin_data.plugin_name == "text"
    (text,) = served.Tensors("sweep/summary")
    assert text.tensor_proto.string_val[0].decode() == (folder / "border.md").read_text()

    # The grid over 2..16 on the same jobs: the search's jobs are read, not rerun.
    search = border.parse(TINY)
    before = snapshot(folder)
    grid = {h: border.run_job(search, "lstm", 10, 1, h, 0, folder)["test/exact"] >= 0.99 for h in range(2, 17)}
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert min(h for h, ok in grid.items() if ok) == found, grid
    assert not grid[found - 1] and grid[found]

    # A second search over the finished folder trains nothing and gives the same table.
    capsys.readouterr()
    assert sweep.main(["border", f"border.dir={folder}", *TINY]) == 0
    assert "  lstm_v10_lag1_h" not in capsys.readouterr().out  # no job line: nothing trained
    assert list(csv.DictReader((folder / "border.csv").open())) == rows

    # The vocab axis: one row per (cell, vocab, lag), bits demanded from that vocab; the vocab-10
    # job at 16 is read from the grid above, only the vocab-100 one trains.
    assert sweep.main(["border", f"border.dir={folder}", *TINY, "task.vocab=10,100", "border.min=16"]) == 0
    trained = [ln.split(":")[0].strip() for ln in capsys.readouterr().out.splitlines() if ln.startswith("  lstm_")]
    assert trained == ["lstm_v100_lag1_h16_s0"]
    rows = list(csv.DictReader((folder / "border.csv").open()))
    assert [(r["vocab"], r["lag"], r["bits demanded"]) for r in rows] == [("10", "1", "3.3"), ("100", "1", "6.6")]
