"""`sweep.py border`: the gallop-then-bisect search against a fake solver, and a tiny real search
checked against a grid over the same sizes built from the same job results."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sweep
from src.border import rounds, search, spec, tables
from src.sweeps.judge import wilson
from tests.run_helpers import ROOT, snapshot, wait_for_file


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
        found, failing = search.gallop_bisect(2, 64, solves)
        assert (found, failing) == (t, t - 1 if t > 2 else None)
        assert len(trained) == len(set(trained)) <= bound, (t, trained)
        again, retrained = counted(t, cache)  # a resumed search: every size it asks is known
        assert search.gallop_bisect(2, 64, again) == (found, failing) and retrained == []
    solves, trained = counted(100)
    assert search.gallop_bisect(2, 64, solves) == (None, 64) and trained == [2, 3, 5, 9, 17, 33, 64]


def test_ladder_search_from_any_start_finds_the_border_on_both_sides():
    """Started at the border the previous lag found: up when that fails, down when it solves,
    always ending at the adjacent pair (largest failing, smallest solving)."""
    sizes = spec.ladder(2, 128, 1.41)
    assert sizes == [2, 3, 4, 5, 7, 9, 12, 16, 22, 31, 43, 60, 84, 118, 128]
    assert spec.ladder(2, 16, 1.0) == list(range(2, 17))
    for t in range(len(sizes) + 1):  # t: the first solving index (len: none solves)
        for start in range(len(sizes)):
            asked: list[int] = []

            def solves(i: int, t: int = t, asked: list[int] = asked) -> bool:
                asked.append(i)
                return i >= t

            found, failing = search.drive(search.ladder_search(len(sizes), start), solves)
            assert found == (t if t < len(sizes) else None)
            assert failing == (t - 1 if t > 0 else None)
            assert len(asked) == len(set(asked)) <= 2 * math.ceil(math.log2(abs(t - start) + 2)) + 1, (t, start, asked)


@pytest.mark.parametrize(
    "ok, need, n, settled",
    [([True, True], 3, 5, None), ([True, True, True], 3, 5, True), ([False, False, False], 3, 5, False),
     ([True, False, True, False], 3, 5, None), ([False], 1, 1, False), ([True], 1, 3, True)],
)  # fmt: skip
def test_the_seeds_at_a_size_stop_once_the_verdict_is_settled(ok, need, n, settled):
    assert search.verdict(ok, n, need) is settled
    assert search.needed(0.5, 5) == 3 and search.needed(0.5, 2) == 1 and search.needed(1.0, 3) == 3


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
        (["model.hidden=8"], "model.hidden is set by the search for each job"),
        (["border.resolution=0.5"], "border.resolution=0.5 must lie in [1, 4]"),
        (["border.context=long"], "border.context=long must be a window length"),
        (["task.lag=4", "border.context=lag-1"], "border.context=lag-1 must be a window length"),
        (["model=lstm,lstm"], "model=lstm,lstm names a cell twice"),
        (["border.metric=val/acc"], "border.metric=val/acc must be a test metric"),
        (["task.out_len=2"], "task.out_len=2 is not supported"),
        (["task.lag=1", "task.delay=5"], "task.lag and task.delay are both given"),
        (["task.delay=5", "task.vocab=10"], "task.vocab=10 does not apply to a search along task.delay"),
        (["task.delay=5", "border.context=9"], "border.context=9 does not apply to a search along task.delay"),
        (["task=echo_lag", "task.delay=5"], "task.delay=5 model.hidden=2 would fail"),
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
    "border.max=6",
    "task.vocab=10",
    "border.context=lag+2",
    "trainer.max_steps=300",
    "data.val_size=200",
    "data.test_size=200",
    "diagnostics=false",
]


def test_tiny_real_search_agrees_with_a_grid_over_the_same_sizes(tmp_path, capsys):
    """Rounds of real `train.py -m` jobs on the parallel launcher; the search's verdict equals the
    grid's over every size, the grid reusing the search's own jobs; a resume trains nothing; a
    resume with other settings is refused."""
    folder = tmp_path / "border"
    # A scheduler's SIGTERM while the first round's job trains: exit 143, the stop recorded in
    # border.json and in the job's own metrics.json; the rerun below goes on from there.
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "sweep.py"), "border", f"border.dir={folder}", *TINY],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    wait_for_file("round_001/*/checkpoints", folder, proc)  # the job is past start-up, in its fit
    # A second search on the live folder: refused in one sentence, nothing of it touched.
    assert sweep.main(["border", f"border.dir={folder}", *TINY]) == 2
    err = capsys.readouterr().err
    assert f"border.dir={folder} is in use by another search (pid {proc.pid}," in err and err.count("\n") == 1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, (out, err)
    assert "has not stopped" not in err, err  # the runner stopped by itself, not by the escalation
    assert "SIGTERM: the search stopped; finished jobs are kept" in err
    assert json.loads((folder / "border.json").read_text())["status"] == "interrupted"
    stopped = [json.loads(m.read_text())["status"] for m in folder.glob("round_001/*/metrics.json")]
    assert stopped and set(stopped) <= {"interrupted", "completed"}, stopped

    # the resume on another launcher (the basic one: jobs in the runner's process); where jobs run
    # is not a setting of the search
    assert sweep.main(["border", f"border.dir={folder}", *TINY, "hydra/launcher=basic"]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader((folder / "border.csv").open()))
    assert len(rows) == 1 and rows[0]["vocab"] == "10" and rows[0]["bits demanded"] == "3.3"  # 1 x log2(10)
    found = int(rows[0]["smallest solving hidden"])
    visited = [int(h) for h in rows[0]["sizes run (in order)"].split(", ")]
    assert len(visited) < 5  # fewer jobs than the grid's 5
    assert ["lstm", "10", "1", str(found)] in [ln.split()[:4] for ln in out.splitlines()]  # printed too
    # the job the SIGTERM stopped ran again in round 2; one that had finished before it was kept
    (job,) = [
        m.parent
        for m in folder.glob("round_*/lstm_v10_lag1_h2_s0/metrics.json")
        if json.loads(m.read_text())["status"] == "completed"
    ]
    assert job.parent.name == ("round_001" if stopped == ["completed"] else "round_002")  # a Hydra job, config kept
    assert (
        "task.context=3" in (job / ".hydra" / "overrides.yaml").read_text()
        or "context: 3" in (job / ".hydra" / "config.yaml").read_text()
    )
    assert json.loads((job / "metrics.json").read_text())["weights"]["test"].startswith("checkpoints/best.ckpt")
    assert json.loads((folder / "border.json").read_text())["status"] == "completed"

    # The plot and the table, as TensorBoard serves them from the border folder.
    assert (folder / "border.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    served = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    served.Reload()
    (image,) = served.Images("sweep/border")
    assert image.encoded_image_string == (folder / "border.png").read_bytes() and image.width > image.height > 0
    assert served.SummaryMetadata("sweep/summary").plugin_data.plugin_name == "text"
    (text,) = served.Tensors("sweep/summary")
    assert text.tensor_proto.string_val[0].decode() == (folder / "border.md").read_text()

    # The grid over 2..6 on the same jobs: the search's jobs are read, not rerun.
    search = spec.parse(TINY)
    before = snapshot(folder)
    done = rounds.find_jobs(folder)
    keys = [spec.JobKey("lstm", 10, 1, h, 0) for h in range(2, 7)]
    rounds.launch(search, folder, 99, [k for k in keys if k.name not in done])
    assert {k: v for k, v in snapshot(folder).items() if k in before} == before
    done = rounds.find_jobs(folder)
    grid = {k.hidden: search.solved(done[k.name][1]) for k in keys}
    assert min(h for h, ok in grid.items() if ok) == found, grid
    assert found == 2 or not grid[found - 1]

    # A second search over the finished folder trains nothing and gives the same table.
    capsys.readouterr()
    assert sweep.main(["border", f"border.dir={folder}", *TINY]) == 0
    assert "\nround " not in capsys.readouterr().out  # no round: nothing trained
    assert list(csv.DictReader((folder / "border.csv").open())) == rows
    jobs = list(csv.DictReader((folder / "jobs.csv").open()))  # every judged job, its metric and verdict
    assert [int(j["hidden"]) for j in jobs if j["seed"] == "0"] == visited and {j["solved"] for j in jobs} <= {
        "True",
        "False",
    }
    record = json.loads((folder / "border.json").read_text())  # the time of the runs that trained is kept
    assert (
        record["starts"] == 3
        and record["wall_s"] > 5
        and "over 3 starts of the search" in (folder / "border.md").read_text()
    )

    # Other settings in the same folder would mix two kinds of job: one sentence, nothing run.
    assert sweep.main(["border", f"border.dir={folder}", *TINY, "trainer.max_steps=500"]) == 2
    err = capsys.readouterr().err
    assert "holds a search whose jobs ran with other settings" in err and err.count("\n") == 1
    assert snapshot(folder).keys() >= before.keys()


def test_only_a_diverged_loss_is_a_verdict_a_full_disk_is_not(tmp_path):
    """A job whose loss diverged did not solve its size; a job that stopped for a reason outside it
    (a full disk, a kill, an interrupt) says nothing about the size: it runs again, and a second
    time stops the search with its own error."""
    job = tmp_path / "round_001" / "lstm_v10_lag1_h4_s0"
    job.mkdir(parents=True)
    record = job / "metrics.json"
    record.write_text(json.dumps({"status": "failed", "error": "train/loss became nan at step 7 (batch 7); ..."}))
    assert rounds.read_record(job)["status"] == "failed"
    assert not spec.parse(["border.max=8"]).solved(rounds.read_record(job))
    disk = "writing /x/last.ckpt failed: No space left on device (errno 28); free space or point paths.output_dir ..."
    for stop in ({"status": "failed", "error": disk}, {"status": "interrupted", "signal": "SIGTERM"}):
        record.write_text(json.dumps(stop))
        assert rounds.read_record(job) is None and rounds.find_jobs(tmp_path) == {}
    record.write_text(json.dumps({"status": "failed", "error": disk}))
    said = rounds.no_verdict(tmp_path, spec.JobKey("lstm", 10, 1, 4, 0))
    assert said == f"job {job} failed: {disk}"
    # a record edited by hand (a string where a number belongs) is no verdict either: job_line
    # formatted it with :.3f and the search ended in a ValueError traceback
    record.write_text(json.dumps({"status": "completed", "test/exact": "1.0", "steps": 10}))
    assert rounds.read_record(job) is None and rounds.find_jobs(tmp_path) == {}
    said = rounds.no_verdict(tmp_path, spec.JobKey("lstm", 10, 1, 4, 0))
    assert said == f"job {job}: metrics.json holds '1.0' at test/exact, where a number belongs (edited or damaged)"
    # a record without the metric (null) is a verdict (not solved), printed without a TypeError
    line = rounds.job_line(spec.parse(["border.max=8"]), job.name, {"status": "completed", "test/exact": None})
    assert line == f"  {job.name}: test/exact not recorded (not solved; stopped by ? at step None, nan s)"


def test_a_cell_only_setting_reaches_the_cells_jobs(tmp_path):
    """`model.r_min` exists only in lru's config; a round's runner applies its command line before
    each job picks its cell, so the search carries such settings in the job's file. Before, the
    round's runner refused it (`Key 'r_min' is not in struct`) and the search stopped."""
    args = ["model=lru", "model.r_min=0.9", "task.lag=1", "seed=0,1", "border.min=2", "border.max=2",
            "task.vocab=10", "trainer.max_steps=100", "data.val_size=100", "data.test_size=100", "diagnostics=false", "hydra/launcher=basic"]  # fmt: skip
    search = spec.parse(args)
    keys = [spec.JobKey("lru", 10, 1, 2, seed) for seed in (0, 1)]  # a round of two: the runner composes
    rounds.launch(search, tmp_path, 1, keys)  # its command line without `+border_job`, hence without lru
    for key in keys:
        job = tmp_path / "round_001" / key.name
        assert json.loads((job / "metrics.json").read_text())["status"] == "completed"
        config = (job / ".hydra" / "config.yaml").read_text()
        assert "r_min: 0.9" in config and "cell: lru" in config


def test_a_search_along_copy_memorys_delay(tmp_path, capsys):
    """`task.delay=...` searches copy_memory's delays with the copy_capacity preset's settings and
    judge (test/acc, recall accuracy); its jobs, table and files name the delay, and the bits
    demanded are symbols x log2(categories), the same at every delay."""
    folder = tmp_path / "copy"
    args = ["model=lstm", "task.delay=2", "seed=0", "border.min=2", "border.max=2", "trainer.max_steps=20", "trainer.val_check_interval=10",
            "data.val_size=50", "data.test_size=50", "diagnostics=false", "hydra/launcher=basic"]  # fmt: skip
    assert sweep.main(["border", f"border.dir={folder}", *args]) == 0
    out = capsys.readouterr().out
    assert "delays [2]" in out and "symbols x log2(categories) = 3 x log2(8)" in out
    (row,) = list(csv.DictReader((folder / "border.csv").open()))
    assert (row["delay"], row["vocab"], row["bits demanded"]) == ("2", "10", "9.0")
    assert row["smallest solving hidden"] == "> 2"  # 20 steps recall nothing
    job = folder / "round_001" / "lstm_v10_delay2_h2_s0"
    config = (job / ".hydra" / "config.yaml").read_text()
    assert "delay: 2" in config and "symbols: 3" in config and "name: copy_memory" in config
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test/acc"] < 0.99
    (job,) = list(csv.DictReader((folder / "jobs.csv").open()))
    assert job["delay"] == "2" and job["solved"] == "False" and float(job["test/acc"]) == metrics["test/acc"]


def test_state_units_count_real_numbers():
    """The LRU's `hidden` units are complex (a real and an imaginary part each), as the LSTM holds
    (h, c): both state 2 x hidden numbers; the table's "state units" first counted the LRU's once."""
    import torch

    from src.models.cells.lru import LRUCell

    assert [tables.state_units(c, 4) for c in ("rnn", "gru", "mingru", "lstm", "lru")] == [4, 4, 4, 8, 8]
    _, last = LRUCell(input_size=3, hidden=4).blocks[0].recurrence(torch.zeros(1, 5, 4), None)
    assert last.shape == (1, tables.state_units("lru", 4))  # the state carried from step to step
