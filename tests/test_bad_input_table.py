"""Every row of docs/bad_input.md (the README's "Bad input" table) is run here: the exact message,
and no earlier run folder changed. The rows are read from the document itself, so the table and
the tests cannot drift apart. Most train.py rows run in-process through the real composed config
(fast); rows Hydra or train.py's command line handle, and a representative few, run the real CLI."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from src.checkpoints import checksum
from src.datamodules.tasks import names as families
from src.hardware import cores
from src.models import cells
from src.run import train
from src.schema import ConfigError
from tests.conftest import CONF, ROOT, run_cli
from tests.run_helpers import snapshot

DOC = ROOT / "docs" / "bad_input.md"
GROUPS = {"task", "model", "data", "optim", "trainer", "hardware", "limits", "logger", "callbacks", "top level",
          "ckpt_path", "output folder", "Hydra", "predict.py", "eval.py", "sweep.py"}  # fmt: skip
# Besides the rows only the command line can test, these run through the real CLI too.
REPRESENTATIVE = {
    "python train.py task.lag=5",
    "python train.py hardware=gpu",
    "python train.py hardware.threads=10000",
    # unknown config options and template habits are answered on the command line, before Hydra
    "python train.py trainer=gpu",
    "python train.py model=transformer",
    "python train.py task=echo_lags",
    "python predict.py $RUN 1 2 3",
    # eval.py's overrides get a run's checks: shared bad inputs through the real command line
    "python eval.py $RUN data.test_size=0",
    "python eval.py $RUN data.test_seed=-1",
    "python eval.py $RUN task.context=100000000",
    "python sweep.py nosuch",
    # a resume of a run's own folder is checked on the command line, before Hydra
    "python train.py ckpt_path=$KILLED/checkpoints/last.ckpt task.lag=3",
    "python train.py ckpt_path=$DAMAGED/checkpoints/last.ckpt",
}


FAILED_ERROR = "the training loss became nan at step 12; the last good checkpoint is checkpoints/last.ckpt"


def read_rows(doc: Path = DOC) -> list[tuple[str, str, str]]:
    """(group, command, message) of each table row: the first code span of a cell (``a `b` c`` when
    it holds a backtick); `\\|` in a cell is a literal `|`."""
    rows = []
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not cells[1].startswith("`"):
            continue
        command, message = (re.search(r"(`+) ?(.+?) ?\1(?!`)", c).group(2).replace("\\|", "|") for c in cells[1:])
        rows.append((cells[0], command, message))
    return rows


ROWS = read_rows()


def needs_cli(group: str, command: str) -> bool:
    args = shlex.split(command)[2:]
    # paths.output_dir is checked against Hydra's run folder, which only the command line has
    handled_before_train = any(
        a.startswith(("hydra.", "-m", "paths.output_dir=")) or a == "ckpt_path=last" for a in args
    )
    return group == "Hydra" or handled_before_train or command in REPRESENTATIVE


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    """The placeholders of the table: a real earlier run (made by the CLI, so it has .hydra/) and
    folders and files derived from it."""
    base = tmp_path_factory.mktemp("earlier")
    run = base / "run"
    res = run_cli("debug=fast", "hardware.threads=1", f"hydra.run.dir={run}", cwd=base)
    assert res.returncode == 0, res.stderr
    file = base / "a_file"
    file.write_text("this is not a checkpoint\n")
    shutil.copy(run / "checkpoints" / "last.ckpt", base / "other.ckpt")
    shutil.copytree(run / ".hydra", base / "bare" / ".hydra")
    shutil.copytree(run, base / "broken")
    best = base / "broken" / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:1000])  # a checkpoint cut short, as by a full disk
    shutil.copytree(run, base / "failed")
    (base / "failed" / "metrics.json").write_text(json.dumps({"status": "failed", "error": FAILED_ERROR}))
    shutil.copytree(run, base / "nanrun")
    for name in ("best.ckpt", "last.ckpt"):  # what a run that diverged before its first check would save
        path = base / "nanrun" / "checkpoints" / name
        ckpt = torch.load(path, weights_only=False)
        ckpt["state_dict"] = {k: torch.full_like(v, float("nan")) for k, v in ckpt["state_dict"].items()}
        torch.save(ckpt, path)
        (path.parent / f"{name}.sha256").write_text(f"{checksum(path)}  {name}\n")  # written whole, as train writes
    shutil.copytree(run / ".hydra", base / "badcfg" / ".hydra")
    (base / "badcfg" / ".hydra" / "config.yaml").write_text("task: {lag: [\n")  # cut short mid-write
    for name, overrides in (("arith", ["task=arithmetic"]), ("label", ["task=invert_bits", "task.lag=2"])):
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            cfg = compose("train", overrides=[*overrides, "paths.output_dir=."])
        (base / name / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, base / name / ".hydra" / "config.yaml")
    shutil.copytree(run, base / "killed")
    (base / "killed" / "metrics.json").unlink()
    shutil.copytree(base / "killed", base / "damaged")
    damaged = base / "damaged" / "checkpoints" / "last.ckpt"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = b"garbage garbage!"
    damaged.write_bytes(bytes(data))
    (base / "badsweep").mkdir()
    (base / "badsweep" / "multirun.yaml").write_text("hydra: {sweeper: [\n")
    return {
        "$RUN": run,
        "$FILE": file,
        "$CKPT": base / "other.ckpt",
        "$BARE": base / "bare",
        "$BROKEN": base / "broken",
        "$MISSING": base / "missing",
        "$REPO": ROOT,
        "$FAILED": base / "failed",
        "$NANRUN": base / "nanrun",
        "$BADCFG": base / "badcfg",
        "$ARITH": base / "arith",
        "$LABEL": base / "label",
        "$BADSWEEP": base / "badsweep",
        "$KILLED": base / "killed",
        "$DAMAGED": base / "damaged",
        "$CORES": cores(),
        "$CELLS": ", ".join(cells.names()),
        "$FAMILIES": ", ".join(families()),
        # a config group's options: the yamls of conf/<group>/ (a new task or model file needs no row edit)
        "$TASKS": ", ".join(sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml"))),
        "$MODELS": ", ".join(sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))),
        "$SWEEPS": ", ".join(sorted(p.stem for p in (ROOT / "conf" / "sweep").glob("*.yaml"))),
    }


def fill(text: str, places: dict[str, Path]) -> str:
    for name in sorted(places, key=len, reverse=True):  # $BADSWEEP before a shorter name it starts with
        text = text.replace(name, str(places[name]))
    return text


def matches(line: str, expected: str) -> bool:
    """Exact, but for `$AVAILABLE`: the free memory of the moment, any amount."""
    pattern = r"[\d.]+ [GM]B".join(re.escape(part) for part in expected.split("$AVAILABLE"))
    return re.fullmatch(pattern, line) is not None


def observe(group: str, command: str, places: dict[str, Path], cwd: Path, capsys) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of one row, in-process where that is the same as the CLI."""
    program, *args = shlex.split(fill(command, places))[1:]
    if needs_cli(group, command):
        res = run_cli(*args, script=program, cwd=cwd)
        return res.returncode, res.stderr.strip().splitlines()
    if program == "train.py":  # the config a user's command line composes (make_cfg would add logger=none)
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            cfg = compose("train", overrides=args)
        given = [a.split("=", 1)[1] for a in args if a.startswith("paths.output_dir=")]
        with open_dict(cfg):
            cfg.paths.output_dir = given[-1] if given else str(cwd / "run")
        try:
            train(cfg)
        except ConfigError as err:
            return 2, [f"error: {err}"]
        return 0, []
    import eval as evaluate
    import predict
    import sweep

    capsys.readouterr()
    code = {"predict.py": predict.main, "eval.py": evaluate.main, "sweep.py": sweep.main}[program](args)
    return code, capsys.readouterr().err.strip().splitlines()


def test_the_table_covers_every_config_group_and_both_tools():
    assert {group for group, _, _ in ROWS} == GROUPS
    assert len({command for _, command, _ in ROWS}) == len(ROWS)  # one row per input


@pytest.mark.parametrize(("group", "command", "message"), ROWS, ids=[c for _, c, _ in ROWS])
def test_bad_input_row(places, tmp_path, capsys, group, command, message):
    before = snapshot(places["$RUN"])
    code, lines = observe(group, command, places, tmp_path, capsys)
    expected = fill(message, places)
    if group == "Hydra":  # Hydra's own multi-line message; its first line is in the table
        assert (code, lines[:1]) == (1, [expected])
    else:
        assert code == 2 and len(lines) == 1 and matches(lines[0], f"error: {expected}"), (code, lines)
    assert snapshot(places["$RUN"]) == before  # the earlier run: same files, contents, times
    # nothing left behind: no run folder in-process, none under outputs/runs or outputs/multirun from the CLI
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("outputs/*/*"))
