"""Shared test helpers: compose the real config with Hydra's compose API, and run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from src.datamodules.tasks import register as register_tasks
from src.models.node import register as register_model

register_model()  # the model node's and the task families' defaults, before any test composes the config
register_tasks()

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")

# Small but real budgets: every test trains for real, just briefly.
FAST = [
    "logger=none",
    "data.val_size=300",
    "data.test_size=300",
    "samples=2",
]


def make_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """The composed train config with outputs under tmp_path (no Hydra run folder involved)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=[*FAST, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


def run_cli(*args: str, cwd: Path = ROOT, script: str = "train.py", timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a top-level script as a user would, in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cfg_factory(tmp_path: Path):
    return lambda *overrides: make_cfg(tmp_path, *overrides)
