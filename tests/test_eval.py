"""eval.py: a trained run evaluated on fresh data under its own or a changed task, into its own
folder; the run folder is only read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

FAST = ["hardware.threads=1", "progress=false", "logger=none", "data.val_size=500", "data.test_size=500"]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default task (echo_lag, lag 1, context 5) trained to its target."""
    folder = tmp_path_factory.mktemp("eval") / "run"
    done = run_cli(*FAST, f"hydra.run.dir={folder}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((folder / "metrics.json").read_text())["test/exact"] == 1.0
    return folder


def _eval(run: Path, *args: str):
    return run_cli(str(run), *args, script="eval.py")


def test_as_trained_reproduces_the_runs_test_result_and_leaves_the_run_alone(run: Path) -> None:
    before = _snapshot(run)
    done = _eval(run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _snapshot(run) == before
    trained = json.loads((run / "metrics.json").read_text())
    (folder,) = (run.parent / "run.eval").iterdir()
    record = json.loads((folder / "metrics.json").read_text())
    # same weights, same test seed and size: the loading is right when the numbers are identical
    assert record["test/exact"] == trained["test/exact"] and record["test/loss"] == pytest.approx(trained["test/loss"])
    assert record["chance"]["exact"] == pytest.approx(0.01)
    assert "chance" in done.stdout and "run test" in done.stdout and str(folder) in done.stdout
    # what the final state holds: trained to echo the value 1 step back, it holds that one (a linear
    # readout recalls it), not the values 3 and 4 steps back (chance 1/vocab = 0.01)
    memory = record["memory"]
    assert memory["delays"] == [0, 1, 2, 3, 4] and memory["kind"] == "accuracy"
    assert memory["score"][1] > 0.5 and max(memory["score"][3:]) < 0.1  # 250 windows fit 100 classes
    assert "memory: a linear readout" in done.stdout
    # the run's own end-of-run diagnostics: the same weights on the same test set give the same numbers
    assert trained["diagnostics"]["memory"]["score"] == pytest.approx(memory["score"])
    assert trained["diagnostics"]["timescales"] == pytest.approx(record["timescales"])


def test_a_changed_lag_shows_what_the_network_did_not_learn(run: Path, tmp_path: Path) -> None:
    """Trained at lag 1, asked for lag 2: a network that learned a one-step delay line answers the
    value one step back, right only by chance (1/vocab, about 1%)."""
    before = _snapshot(run)
    done = _eval(run, "task.lag=2", "data.test_seed=11", "--out", str(tmp_path / "lag2"))
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "lag2" / "metrics.json").read_text())
    assert record["overrides"]["task.lag"] == {"run": 1, "eval": 2}
    assert record["test/exact"] < 0.1 and record["run_test"]["test/exact"] == 1.0
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.hidden=3"], "model.hidden cannot be changed by eval.py"),
        (["task.vocab=50"], "task.vocab cannot be changed by eval.py"),
        (["task.lag=9"], "exceeds task.context=5"),
        (["lag2"], "'lag2' is not an override"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    before = _snapshot(run)
    done = _eval(run, *args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() and _snapshot(run) == before


def test_an_existing_output_folder_is_never_overwritten(run: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    done = _eval(run, "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "already holds files" in done.stderr
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_the_generalisation_table_reads_real_evaluations_and_reuses_them(run: Path, tmp_path: Path) -> None:
    """docs/generalisation/run.py on the module's run (echo_lag, lag 1, window 5) as seed 0 of the
    echo study: the run is reused (not retrained), eval.py evaluates it at lags 0..2, and the table
    says lag 1 (as trained) is exact while lags 0 and 2 are near chance 1/vocab."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("generalisation", ROOT / "docs" / "generalisation" / "run.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    shutil.copytree(run, tmp_path / "runs" / "echo_s0")  # the module's run stays as the other tests expect it
    folder = gen.train("echo", 0, tmp_path / "runs")
    assert folder == tmp_path / "runs" / "echo_s0"  # metrics.json present: not retrained
    study = {
        "trained": {"task.context": 5, "task.lag": 1},
        "metric": "exact",
        "evals": [{"task.lag": k} for k in range(3)],
    }
    table = gen.rows("echo", {0: folder}, study)
    assert [r["setting"] for r in table] == ["context 5, lag 0", "context 5, lag 1", "context 5, lag 2"]
    assert [r["as_trained"] for r in table] == [False, True, False]
    assert table[1]["mean"] == 1.0 and table[0]["mean"] < 0.1 and table[2]["mean"] < 0.1
    assert all(r["chance"] == pytest.approx(0.01) and r["sd"] == 0.0 and r["seeds"] == "0" for r in table)
    written = folder.parent / "echo_s0.eval" / "lag=1" / "metrics.json"
    assert json.loads(written.read_text())["overrides"]["task.lag"] == {"run": 1, "eval": 1}
    stamp = written.stat().st_mtime_ns
    assert gen.rows("echo", {0: folder}, study) == table and written.stat().st_mtime_ns == stamp  # read, not redone
    text = gen.write(table, [0], tmp_path / "table")
    assert "| context 5, lag 1 (as trained) | 3 | 1.000 | 1.000 ± 0.000 | 0.010 |" in text
    assert (tmp_path / "table" / "generalisation.md").read_text() == text
    assert (tmp_path / "table" / "generalisation.csv").read_text().count("\n") == 4  # header + 3 rows
