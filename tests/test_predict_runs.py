"""predict.py on runs that did not complete: an interrupted (or still running) run is used with a
warning that says so; a failed one and one with NaN weights are refused (rows of
docs/bad_input.md)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import run_cli


@pytest.mark.slow  # ~18 s: a run killed mid-fit, then predict; the default suite stays under CI's 10 minutes
def test_an_unfinished_run_predicts_with_a_warning(tmp_path):
    run = tmp_path / "run"
    r = run_cli("debug=fast", "logger=none", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli(str(run), "4", "8", "15", "16", "23", script="predict.py")
    assert r.returncode == 0 and r.stderr == "" and "expected  16" in r.stdout  # completed: no warning

    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    m = json.loads((stopped / "metrics.json").read_text())
    (stopped / "metrics.json").write_text(json.dumps({**m, "status": "interrupted", "signal": "SIGTERM"}))
    r = run_cli(str(stopped), "4", "8", "15", "16", "23", script="predict.py")
    assert r.returncode == 0 and "expected  16" in r.stdout
    assert r.stderr == f"warning: run {stopped} was interrupted; predicting with best.ckpt as it was saved.\n"

    (stopped / "metrics.json").unlink()  # still running, or killed before it could write one
    r = run_cli(str(stopped), "4", "8", "15", "16", "23", script="predict.py")
    assert r.returncode == 0 and "has no metrics.json (still running, or killed)" in r.stderr
