"""eval.py, predict.py and sweep.py refuse what train.py refuses: each calls the one
`src.run_config.validate`. The same bad values through each real command line: exit status 2,
train.py's sentence, and the run folder they read unchanged (hashed before and after)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import run_cli
from tests.run_helpers import snapshot

RUN_OVERRIDES = ("debug=fast", "hardware.threads=1", "logger=none")
# (override, a fragment of train.py's sentence); eval.py may change these keys of a run
SHARED = [
    ("data.test_size=0", "data.test_size=0 is not allowed; it must be an integer >= 1."),
    ("data.test_seed=-1", "data.test_seed=-1 is not allowed; it must be an integer in [0, 2**32)."),
    ("data.test_seed=4294967296", "data.test_seed=4294967296 is not allowed; it must be an integer in [0, 2**32)."),
    # ~55,000 GB: eval.py once tried to allocate its test set
    ("task.context=100000000", "this config needs at least "),
    ("task.lag=5", "task.lag + task.out_len = 5 + 1 = 6 exceeds task.context=5"),
]
# what only a training run (and so sweep.py's jobs) can set
TRAINING = [
    ("+trainer.min_steps=100000", "trainer.min_steps=100000 exceeds the training budget of "),
    ("data.batches_per_epoch=9223372036854775808", "data.batches_per_epoch=9223372036854775808 is not allowed; "),
    ("optim.optimizer.lr=inf", "optim.optimizer.lr=inf is not allowed; it must be a number > 0 and <= 10 "),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("entry")
    res = run_cli(*RUN_OVERRIDES, f"hydra.run.dir={base / 'run'}", cwd=base)
    assert res.returncode == 0, res.stderr
    return base / "run"


def refusal(res) -> str:
    """The one line of a refusal (exit 2), the free memory of the moment blanked."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (res.returncode, res.stderr)
    return re.sub(r"[\d.]+ GB available", "N GB available", lines[0].removeprefix("error: "))


def train_refusal(override: str, cwd: Path) -> str:
    res = run_cli(*RUN_OVERRIDES, override, f"hydra.run.dir={cwd / 'new'}", cwd=cwd)
    assert not (cwd / "new").exists()  # refused before the run folder is made
    return refusal(res)


@pytest.mark.parametrize(("override", "fragment"), SHARED, ids=[o for o, _ in SHARED])
def test_eval_refuses_what_train_refuses(run, tmp_path, override, fragment):
    said = train_refusal(override, tmp_path)
    assert fragment in said
    before = snapshot(run)
    assert refusal(run_cli(str(run), override, script="eval.py", cwd=tmp_path)) == said
    assert snapshot(run) == before and not run.with_name("run.eval").exists()


@pytest.mark.parametrize(("override", "fragment"), SHARED[:3] + SHARED[4:], ids=[o for o, _ in SHARED[:3] + SHARED[4:]])
def test_predict_refuses_a_run_whose_config_train_refuses(run, tmp_path, override, fragment):
    """A config edited by hand after training. (The memory estimate is not predict.py's: it
    trains nothing and builds no evaluation set.)"""
    said = train_refusal(override, tmp_path)
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    cfg_path = edited / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(cfg_path)
    key, value = override.split("=")
    OmegaConf.update(cfg, key, yaml.safe_load(value))  # YAML-typed, as Hydra reads it
    OmegaConf.save(cfg, cfg_path)
    before = snapshot(edited)
    res = run_cli(str(edited), "1", "2", "3", "4", "5", script="predict.py", cwd=tmp_path)
    assert refusal(res) == f"{cfg_path} holds a config train.py would refuse: {said}"
    assert snapshot(edited) == before


@pytest.mark.parametrize(("override", "fragment"), SHARED + TRAINING, ids=[o for o, _ in SHARED + TRAINING])
def test_a_sweep_preset_refuses_what_train_refuses(tmp_path, override, fragment):
    """Every job of the preset goes through the same checks before any starts; a preset composes
    its own sizes, so the sentence is the same rule, not the same numbers."""
    res = run_cli("hidden", override, script="sweep.py", cwd=tmp_path)
    said = refusal(res)
    assert re.fullmatch(rf"the job .*{re.escape(override)}.* of sweep preset 'hidden' would fail: .*", said), said
    assert fragment in said
    assert not list(tmp_path.glob("outputs/*/*"))


@pytest.mark.parametrize(("override", "fragment"), TRAINING, ids=[o for o, _ in TRAINING])
def test_train_refuses_the_training_only_values(tmp_path, override, fragment):
    assert fragment in train_refusal(override, tmp_path)
