"""Running a border search: a lock and the settings file on its folder, rounds of jobs (each one
`train.py -m` on the preset's launcher) until every lane is finished or a signal stops it, the
jobs' records read back, and the result written (tables, plots, border.json, TensorBoard).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from src import signals
from src.border.plots import memory_plot, plot
from src.border.search import Lane, Point
from src.border.spec import JobKey, Search, cell_overrides, check, job_file, parse, settings, shaping
from src.border.tables import header, job_table, result
from src.files import write_text
from src.sweeps import records
from src.sweeps.callbacks import SUMMARIZED_ENV
from src.sweeps.judge import weights_judged
from src.sweeps.records import SweepError
from src.sweeps.runner import ROOT
from src.sweeps.tables import md_table, text_table
from src.sweeps.tensorboard import write_tensorboard


def lock(folder: Path) -> Any:
    """Hold <folder>/.border/lock for this process's search (released when the process ends, however
    it ends). A second search on the same folder would run the same jobs into the same rounds:
    refused in one sentence naming the process that holds it."""
    import fcntl

    path = folder / ".border" / "lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as err:
        raise SweepError(
            f"border.dir={folder} cannot be written ({err.strerror or err}); pick a writable folder."
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise SweepError(
            f"border.dir={folder} is in use by another search ({owner}); two searches on one folder would run "
            "the same jobs twice: wait for it to end, or pick another border.dir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def claim(search: Search, folder: Path) -> None:
    """border.yaml in the folder: written by the first search, compared by every resume."""
    path = folder / "border.yaml"
    mine = settings(search)
    if path.exists():
        theirs = yaml.safe_load(path.read_text()) or {}
        if theirs != mine:
            diff = [f"{k} {theirs.get(k)!r} there, {mine[k]!r} now" for k in mine if theirs.get(k) != mine[k]]
            raise SweepError(
                f"border.dir={folder} holds a search whose jobs ran with other settings ({'; '.join(diff)}); "
                "its jobs would not be the same jobs: pick a new border.dir."
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_text(path, yaml.safe_dump(mine, sort_keys=False))


def read_record(job: Path) -> dict[str, Any] | None:
    """metrics.json of a job that ended with a verdict: completed, or failed because its loss
    diverged; None: run it (again)."""
    metrics, _ = records.read_record(job / "metrics.json")  # damaged or edited by hand: no verdict
    if metrics is None:
        return None
    if metrics.get("status") == "completed":
        return metrics
    if metrics.get("status") == "failed" and str(metrics.get("error", "")).startswith("train/loss became"):
        return metrics  # it diverged: a verdict on this size and seed (not solved)
    return None  # interrupted, killed, a full disk...: not a verdict, run it again


def find_jobs(folder: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (folder, metrics) of every job with a record, the latest round winning."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for round_dir in sorted(p for p in folder.glob("round_*") if p.is_dir()):
        for job in sorted(p for p in round_dir.iterdir() if p.is_dir()):
            record = read_record(job)
            if record is not None:
                found[job.name] = (job, record)
    return found


def no_verdict(folder: Path, key: JobKey) -> str:
    """Why a job that ran gave no verdict, from its latest metrics.json (a full disk, a crash...)."""
    for job in sorted(folder.glob(f"round_*/{key.name}"), reverse=True):
        if not (job / "metrics.json").is_file():
            continue
        metrics, why = records.read_record(job / "metrics.json")
        if metrics is None:
            return f"job {job}: {why}"
        return f"job {job} {metrics.get('status', 'ended')}: {metrics.get('error', 'no reason recorded')}"
    return f"job {key.name} ended without a record (metrics.json); see {folder}/round_*.log"


def job_line(search: Search, name: str, metrics: dict[str, Any]) -> str:
    value = metrics.get(search.metric)
    if metrics.get("status") != "completed":
        return f"  {name}: failed ({metrics.get('error', 'no reason recorded')}); counted as not solved"
    target = metrics.get("target") or {}
    why = metrics.get("stopped_by") or ("target" if target.get("reached") else "?")
    seconds = metrics.get("fit_time_s")  # a record holds a number or null here (records.read_record)
    return (
        f"  {name}: {search.metric} {'not recorded' if value is None else f'{value:.3f}'} "
        f"({'solved' if search.solved(metrics) else 'not solved'}; stopped by {why} at step {metrics.get('steps')}, "
        f"{float('nan') if seconds is None else seconds:.1f} s)"
    )


class Stopped(Exception):
    """The user (Ctrl-C) or a scheduler (SIGTERM) stopped the search; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def launch(
    search: Search, folder: Path, number: int, keys: Sequence[JobKey], stops: signals.Forward | None = None
) -> None:
    """One round: the jobs as a `train.py -m` multirun on the preset's launcher, with its output in
    <folder>/round_<n>.log and a line here for each job as it finishes. Ctrl-C or SIGTERM (`stops`,
    which owns them for the whole search) is passed to the runner, which stops its jobs at a batch
    boundary; then Stopped is raised."""
    if stops is None:
        with signals.Forward() as own:
            return launch(search, folder, number, keys, own)
    groups = folder / ".border" / "border_job"
    groups.mkdir(parents=True, exist_ok=True)
    for key in keys:
        write_text(groups / f"{key.name}.yaml", job_file(search, key))
    round_dir = folder / f"round_{number:03d}"
    in_job_files = set(cell_overrides(search))
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        f"+sweep={search.preset}",
        "hydra.sweeper.params=null",  # the preset's own grid: not this round's jobs
        f"hydra.searchpath=[file://{(folder / '.border').resolve()}]",
        "+border_job=" + ",".join(k.name for k in keys),
        f"hydra.sweep.dir={round_dir}",
        "hydra.sweep.subdir=${hydra.runtime.choices.border_job}",
        "progress=false",
        *(o for o in search.overrides if o not in in_job_files),
    ]
    with open(folder / f"round_{number:03d}.log", "a") as log:
        log.write("$ " + " ".join(cmd[1:]) + "\n")
        log.flush()
        env = {k: v for k, v in os.environ.items() if k != signals.STOP_FILE_ENV}  # a runner of its own
        env[SUMMARIZED_ENV] = "1"  # a round's table would only fill its log: the search writes its own
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, env=env,
            preexec_fn=signals.stop_with_parent(),
        )  # fmt: skip
        printed: set[str] = set()

        def poll() -> None:
            for key in keys:
                if key.name not in printed:
                    record = read_record(round_dir / key.name)
                    if record is not None:
                        printed.add(key.name)
                        print(job_line(search, key.name, record), flush=True)

        stops.wait(proc, poll)
        poll()
    if stops.got:
        raise Stopped(stops.got[0])


def search_all(search: Search, folder: Path, stops: signals.Forward) -> tuple[list[Point], int | None]:
    """Rounds of jobs until every lane is finished or a signal came (`stops`); (points, the signal
    that stopped it or None)."""
    lanes = [Lane(search, c, v) for c in search.cells for v in search.vocabs or []]
    launched: set[JobKey] = set()
    number = 1 + max([int(p.name.split("_")[1]) for p in folder.glob("round_[0-9]*") if p.is_dir()] or [0])
    stopped = None
    while True:
        records = find_jobs(folder)
        wanted: list[JobKey] = []
        for lane in lanes:
            keys = lane.wants(records)
            for k in keys:
                if k in launched:  # run once in this search and still without a verdict
                    raise SweepError(f"{no_verdict(folder, k)}; the search stops here, its jobs so far are kept.")
            wanted += keys
        if not wanted:
            break
        if stops.got:  # between rounds: no new round
            stopped = stops.got[0]
            break
        print(f"round {number}: {len(wanted)} job{'s' if len(wanted) > 1 else ''}", flush=True)
        launched.update(wanted)
        try:
            launch(search, folder, number, wanted, stops)
        except Stopped as stop:
            stopped = stop.signum
            records = find_jobs(folder)
            for lane in lanes:
                lane.wants(records)  # what finished before the stop still counts
            break
        number += 1
    return [p for lane in lanes for p in lane.points if p.jobs], stopped


def run_border(overrides: Sequence[str], root: Path = Path("outputs/border")) -> tuple[int, Path]:
    """`sweep.py border [overrides]`: search, print the table, write border.md, border.csv,
    border.png, memory.png, border.json (how it ended) and a TensorBoard event file (the plots and
    the table) into the folder. `border.dir=<folder>` picks (or resumes) the folder.
    Returns (exit code: 0, 130 after Ctrl-C, 143 after SIGTERM; folder)."""
    given = [o for o in overrides if o.startswith("border.dir=")]
    overrides = [o for o in overrides if not o.startswith("border.dir=")]
    search = parse(overrides)
    folder = Path(given[-1].split("=", 1)[1]) if given else root / time.strftime("%Y-%m-%d_%H-%M-%S")
    check(search, folder)
    assert search.vocabs is not None
    held = lock(folder)  # noqa: F841 - held until this process ends
    claim(search, folder)
    print(
        f"border search in {folder}: cells {search.cells}, vocabs {search.vocabs}, {search.axis}s {search.lags}, hidden "
        f"{search.sizes_text()}, seeds {search.seeds}, solved: {search.rule()} on >= {search.share:.0%} of seeds; each round is one train.py -m (log: "
        f"{folder}/round_<n>.log)",
        flush=True,
    )
    t0 = time.perf_counter()
    with signals.Forward() as stops:  # from here a signal ends the search with its record written
        points, stopped = search_all(search, folder, stops)
        code = 0 if stopped is None else 128 + stopped
        status = {"status": "completed" if stopped is None else "interrupted", "exit_code": code}
        if stopped is not None:
            status["signal"] = signal.Signals(stopped).name
            print(
                f"\n{signal.Signals(stopped).name}: the search stopped; finished jobs are kept, run the same command "
                f"with border.dir={folder} to go on",
                file=sys.stderr,
            )
        write_result(search, folder, points, time.perf_counter() - t0, overrides, status)
        if stopped is None and stops.got:  # came while the result was written: it is complete
            code = 128 + stops.got[0]
            print(
                f"\n{signal.Signals(stops.got[0]).name} while the result was written; it is complete", file=sys.stderr
            )
    return code, folder


def write_result(
    search: Search,
    folder: Path,
    points: list[Point],
    wall: float,
    overrides: Sequence[str],
    status: dict[str, Any] | None = None,
) -> None:
    from src.files import write_json

    command = " ".join(["python sweep.py border", *overrides])
    same = " ".join(shaping(overrides))  # the same search, wherever its jobs ran
    inherited = False  # whether another search in this folder ran jobs this one reads (their time is theirs)
    try:  # the same search resumed: its time so far is added, so a rerun that trains nothing keeps it
        before = json.loads((folder / "border.json").read_text())
        if before.get("search") != same:  # another search in this folder (other lags, cells)
            inherited = True
            raise ValueError
        wall, starts = wall + float(before.get("wall_s", 0.0)), int(before.get("starts", 1)) + 1
        inherited = bool(before.get("inherited", False))
    except (OSError, ValueError, TypeError, AttributeError):
        starts = 1
    stops = Counter(str(j.get("stopped_by") or j.get("status")) for p in points for j in p.jobs)
    n_jobs = sum(stops.values())
    note = (
        f"Smallest `model.hidden` of {search.sizes_text()} at which at least {search.share:.0%} of seeds "
        f"{search.seeds} reach `{search.rule()}` "
        f"(training settings of the `{search.preset}` preset"
        f"{'' if search.context is None else f', task.context={search.context}'}; {search.metric} measured on "
        f"{weights_judged(j['weights'] for p in points for j in p.jobs)}; jobs stopped by "
        f"{', '.join(f'{k} ({n})' for k, n in stops.items()) or 'nothing yet'}); solved there: solved seeds/seeds "
        f"[95% Wilson interval]; bits demanded = "
        f"{search.bits_text()}"
        "; state units = real numbers in the state: hidden (2 x hidden for lstm's (h, c) and for lru's "
        f"complex units). {n_jobs} job{'' if n_jobs == 1 else 's'}, {wall:.0f} s"
        f"{f' over {starts} starts of the search' if starts > 1 else ''}"
        f"{' (its own time: it read jobs that an earlier search in this folder ran)' if inherited else ''}."
    )
    unfinished = [p for p in points if not p.done]
    if unfinished:
        note += (
            " Unfinished (the search stopped): "
            + ", ".join(f"{p.cell} vocab {p.vocab} {search.axis} {p.lag}" for p in unfinished)
            + "."
        )
    table = result(search, points)
    rows = table.values.tolist()
    markdown = f"# Capacity border\n\n`{command}`\n\n{note}\n\n{md_table(header(search), rows)}\n"
    write_text(folder / "border.md", markdown)
    write_text(folder / "border.csv", table.to_csv(index=False, header=header(search), lineterminator="\n"))
    write_text(folder / "jobs.csv", job_table(search, points).to_csv(index=False, lineterminator="\n"))
    written = [folder / "border.md", folder / "border.csv"]
    if points:
        written.append(plot(search, points, folder / "border.png"))
        curves = memory_plot([p for p in points if p.done], folder / "memory.png", search.axis, search.held)
        if curves is not None:
            written.append(curves)
    written.append(write_tensorboard(folder, written[2:], markdown, time.time()))
    written.insert(2, folder / "jobs.csv")
    write_json(
        folder / "border.json",
        {
            **(status or {"status": "completed", "exit_code": 0}),
            "jobs": n_jobs,
            "command": command,
            "search": same,
            "wall_s": wall,
            "starts": starts,
            "inherited": inherited,
        },
    )
    print(f"\n{note}\n\n{text_table(header(search), rows)}\n\nWrote " + ", ".join(str(p) for p in written))
    print(f"  TensorBoard: tensorboard --logdir {folder}  (Images: the plots, Text: the table)")
