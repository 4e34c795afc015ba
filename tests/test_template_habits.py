"""What a lightning-hydra-template user types, through the terminal: each habit works, or gets one
sentence naming this project's way, with exit status 2 (src/command_line.py, eval.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import run_cli

TINY = [
    "trainer.max_steps=10",
    "trainer.val_check_interval=10",
    "data.val_size=100",
    "data.test_size=100",
    "diagnostics=false",
    "hardware.threads=1",
]


def refused(res, *words: str) -> str:
    """The one line a refusal prints, after checking the exit status and that it names `words`."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, (res.returncode, res.stderr[-2000:])
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("override", "closest"),
    [("task=echo_lags", "echo_lag"), ("model=lstn", "lstm"), ("experiment=s3", "s3_echo_lag"), ("debug=fst", "fast")],
)
def test_an_unknown_config_option_gets_the_closest_names(tmp_path: Path, override: str, closest: str) -> None:
    res = run_cli(override, cwd=tmp_path)
    group, value = override.split("=")
    line = refused(res, f"{group}={value!r} is not allowed (did you mean {closest}", "choose one of:")
    assert "search path" not in res.stderr and not (tmp_path / "outputs").exists()
    assert len(line) < 400


def test_a_sweep_of_options_is_checked_option_by_option(tmp_path: Path) -> None:
    res = run_cli("-m", "model=lstm,gruu", cwd=tmp_path)
    refused(res, "model='gruu' is not allowed (did you mean gru")
    assert not (tmp_path / "outputs").exists()


def test_trainer_gpu_names_hardware_gpu(tmp_path: Path) -> None:
    refused(run_cli("trainer=gpu", cwd=tmp_path), "trainer='gpu' is not allowed", "hardware=gpu")


def test_sweep_preset_works_as_help_lists_it(tmp_path: Path) -> None:
    """`sweep=hidden` as `--help` lists the group, without the `+` Hydra would ask for."""
    assert "sweep: " in run_cli("--help", cwd=tmp_path).stdout  # listed as a group
    res = run_cli("sweep=hidden", "model=lstm", "--cfg", "job", cwd=tmp_path)  # with a group of the defaults list
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = OmegaConf.create(res.stdout)
    assert cfg.callbacks.target_reached.target == 0.995 and cfg.trainer.max_steps == 2000  # the preset's


@pytest.fixture(scope="module")
def tagged_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("habits") / "run"
    res = run_cli("tags=[baseline,lag1]", *TINY, f"hydra.run.dir={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    return run


def test_tags_are_accepted_and_recorded(tagged_run: Path) -> None:
    assert OmegaConf.load(tagged_run / "tb" / "hparams.yaml")["tags"] == "baseline,lag1"
    assert list(OmegaConf.load(tagged_run / ".hydra" / "config.yaml").tags) == ["baseline", "lag1"]


def test_eval_takes_the_checkpoint_path_of_a_run(tagged_run: Path, tmp_path: Path) -> None:
    best = tagged_run / "checkpoints" / "best.ckpt"
    res = run_cli(f"ckpt_path={best}", "--out", str(tmp_path / "eval"), script="eval.py")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"run {tagged_run} (best.ckpt)" in res.stdout and (tmp_path / "eval" / "metrics.json").is_file()
    # a checkpoint eval.py would not use: one sentence naming the form it takes
    last = tagged_run / "checkpoints" / "last.ckpt"
    line = refused(run_cli(f"ckpt_path={last}", script="eval.py"), f"pass the run folder, python eval.py {tagged_run}")
    assert "does not exist" not in line
