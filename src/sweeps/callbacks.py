"""The Hydra callbacks of a multirun (conf/hydra/default.yaml): job folders named by what sets each
job apart (`JobNames`), the sweep folder and `[sweep] k/N jobs done` printed as jobs end
(`SweepProgress`), every stop of a job made visible and the sweep's ending printed
(`SweepOutcome`); and `already_run`, which keeps a sweep that goes on after its runner died from
running a recorded job again. Light: no torch, no Lightning (Hydra builds them before any job).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from src import signals
from src.sweeps.records import PID_FILE, STATUSES, SweepError, expected_jobs, load_sweep, read_record, sweep_overrides

CONTINUE_ENV = "RNN_MEMORY_SWEEP_CONTINUE"  # set by run_preset when it goes on after a hard crash


def already_run(cfg: Any) -> dict[str, Any] | None:
    """In a sweep that `run_preset` goes on with after its runner died, a job whose folder already
    holds a record (metrics.json), or the remains of a job that died with the runner, is not run
    again and nothing of it is touched: returns its metrics (remains are recorded `failed` first).
    None: run the job (always, outside such a sweep)."""
    if not os.environ.get(CONTINUE_ENV):
        return None
    folder = Path(str(cfg.paths.output_dir))
    record = folder / "metrics.json"
    if not record.exists():
        remains = [p.name for p in folder.iterdir() if p.name not in (".hydra", ".lock", "train.log")]
        if not remains:
            return None  # never started: run it
        error = "its process died with the sweep's runner before it finished; not run again, its files are kept"
        record.write_text(json.dumps({"status": "failed", "error": error}, indent=2) + "\n")
    metrics, _ = read_record(record)
    metrics = metrics if isinstance(metrics, dict) else {}
    print(f"[sweep] {folder.name}: already recorded ({metrics.get('status', 'unreadable')}); not run again", flush=True)
    return metrics


SUMMARIZED_ENV = "RNN_MEMORY_SWEEP_SUMMARIZED"  # set by run_preset, which summarizes the sweep itself
NAME_MAX = 255  # bytes in one file name on the usual file systems (ext4, xfs, APFS, NTFS)

UNKNOWN_CHARS = 24  # a value not known in advance: a float Optuna samples prints in <= 24 chars


def job_name_plan(hydra: dict[str, Any]) -> tuple[list[str], int]:
    """How the job folders `<num>_<override_dirname>` of a sweep will read, from its (unresolved)
    hydra config: (the override keys that take one value in every job, which say nothing about a
    job; bytes in the longest folder name the other keys can make)."""
    final: dict[str, Any] = {}
    for o in sweep_overrides(hydra):  # a later override of a key replaces the earlier one
        final[o.get_key_element()] = o
    dirname = ((hydra.get("job") or {}).get("config") or {}).get("override_dirname") or {}
    exclude = set(dirname.get("exclude_keys") or [])
    kv_sep, item_sep = str(dirname.get("kv_sep", "=")), str(dirname.get("item_sep", ","))
    fixed: list[str] = []
    widths: list[int] = []
    jobs = 1
    for key, o in final.items():
        if o.key_or_group in exclude:
            continue
        values: list[str] | None = None
        if o.is_sweep_override() and o.is_discrete_sweep():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # glob(): its options are only known to the config loader
                values = None
        elif not o.is_sweep_override():
            values = [str(o.get_value_element_as_str())]
        if values is not None and len(values) == 1:
            fixed.append(o.key_or_group)
            continue
        jobs *= len(values) if values else 1
        items = [f"{key}={v}" for v in values] if values else [f"{key}={'x' * UNKNOWN_CHARS}"]
        widths.append(max(len(i.replace("=", kv_sep).encode()) for i in items))
    trials = (hydra.get("sweeper") or {}).get("n_trials")
    jobs = max(jobs, trials if isinstance(trials, int) else 1)
    longest = len(str(jobs - 1)) + 1 + sum(widths) + len(item_sep.encode()) * max(len(widths) - 1, 0)
    return fixed, longest


class JobNames(Callback):
    """Hydra callback (conf/hydra/default.yaml): a job folder is named by what sets the job apart,
    `<num>_<the overrides that vary across the sweep>`, e.g. `3_model.hidden=50,task.lag=2`, not by
    the budget every job shares (`trainer.max_steps=500`, ...), which would make all names long and
    alike. A job's full overrides stay in its `.hydra/overrides.yaml`, the sweep's in multirun.yaml.

    Every launcher (basic, joblib, submitit, under any sweeper) composes each job's config afresh
    from the sweep's `hydra.overrides.hydra`, so the naming is added there, once, before the first
    job. When a name could exceed NAME_MAX bytes (the file system would refuse the folder, ending
    the sweep), jobs are named by number alone."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = OmegaConf.to_container(config.hydra, resolve=False)
        assert isinstance(hydra, dict)
        fixed, longest = job_name_plan(hydra)
        add = []
        if fixed:
            keys = [*config.hydra.job.config.override_dirname.exclude_keys, *fixed]
            add.append("hydra.job.config.override_dirname.exclude_keys=[" + ",".join(f"'{k}'" for k in keys) + "]")
        if longest > NAME_MAX and "override_dirname" in str(hydra["sweep"]["subdir"]):
            add.append("hydra.sweep.subdir=${hydra.job.num}")
            print(
                f"note: job folder names would reach {longest} bytes (the limit is {NAME_MAX}); jobs are named by "
                "number, and each job's overrides are in its .hydra/overrides.yaml.",
                file=sys.stderr,
            )
        with read_write(config.hydra.overrides.hydra):
            config.hydra.overrides.hydra.extend(add)


class SweepOutcome(Callback):
    """Hydra callback (conf/hydra/default.yaml) that makes every stop of a job visible.

    - At each job's start, the job's process id goes to `<job>/.hydra/pid`: a job folder without
      metrics.json whose process is gone was killed hard (segfault, out-of-memory kill), which no
      code inside that process could record; `read_job` reports it as failed ("killed").
    - At the sweep's end, `train.py -m` exits 1 when any job did not complete (train records a
      failed job and goes on, so Hydra itself would exit 0), naming how many and where to look;
      128 + the signal when a signal stopped the sweep. Before that it prints the sweep's table
      (the one `sweep.py summarize` prints) and the commands for the full summary and TensorBoard,
      so a multirun does not end on its last job's line."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        pid = Path(str(config.hydra.runtime.output_dir)) / PID_FILE
        pid.parent.mkdir(parents=True, exist_ok=True)
        pid.write_text(f"{os.getpid()}\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        if not os.environ.get(SUMMARIZED_ENV):  # sweep.py summarizes (and prints) on its own
            from src.sweeps.summarize import ending

            print("\n".join(ending(folder)), flush=True)
        try:
            sweep = load_sweep(folder)
        except SweepError as err:
            print(f"error: the sweep's outcome cannot be read: {err}", file=sys.stderr)
            sys.exit(1)
        bad = [j for j in sweep.jobs if j.status != "completed"]
        stopped = signals.received()  # by a signal to this runner or to any of its jobs
        if bad or stopped is not None:
            counts = ", ".join(f"{sweep.count(s)} {s}" for s in STATUSES[1:] if sweep.count(s))
            why = "error" if stopped is None else f"{signal.Signals(stopped).name}, the sweep stopped"
            print(
                f"{why}: {len(bad)} of {len(sweep.jobs)} jobs did not complete ({counts or 'none'}); "
                f"see `python sweep.py summarize {folder}`.",
                file=sys.stderr,
            )
            sys.exit(1 if stopped is None else 128 + stopped)


def sweep_size(config: DictConfig) -> int | None:
    """Jobs a multirun will launch: Optuna's n_trials, or the basic sweeper's expansion of the
    command line and hydra.sweeper.params; None when it cannot be told in advance."""
    sweeper = config.hydra.sweeper
    if "n_trials" in sweeper:
        return int(sweeper.n_trials)
    try:
        jobs = expected_jobs(OmegaConf.to_container(config, resolve=False))
    except Exception:  # e.g. glob(): only the config loader knows its options
        return None
    return len(jobs) if jobs is not None else None


class SweepProgress(Callback):
    """Hydra callback (conf/hydra/default.yaml): prints the sweep folder when a multirun starts,
    and after every job `[sweep] k/N jobs done (i interrupted, f failed) after t s` on stderr.

    on_job_end runs in the job's own process (a loky worker under the joblib launcher), so the
    count is read from the sweep folder: a job is done once its metrics.json exists. Time counts
    from multirun.yaml, which the sweeper writes as the sweep starts."""

    def __init__(self) -> None:
        self.total: int | None = None  # set in on_multirun_start; travels to the workers with the callback

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.total = sweep_size(config)
        jobs = f"{self.total} jobs" if self.total is not None else "jobs"
        print(f"[sweep] {jobs} -> {Path(str(config.hydra.sweep.dir)).absolute()}", file=sys.stderr, flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        folder = Path(str(config.hydra.sweep.dir)).absolute()
        done, interrupted, failed = 0, 0, 0
        for path in folder.rglob("metrics.json"):
            done += 1
            record, _ = read_record(path)
            status = record.get("status") if record is not None else None
            interrupted += status == "interrupted"
            failed += status not in ("completed", "interrupted")
        total = f"/{self.total}" if self.total is not None else ""
        since = folder / "multirun.yaml"
        after = f" after {time.time() - since.stat().st_mtime:.0f} s" if since.exists() else ""
        counts = [f"{n} {what}" for n, what in ((interrupted, "interrupted"), (failed, "failed")) if n]
        failures = f" ({', '.join(counts)})" if counts else ""
        line = f"[sweep] {done}{total} jobs done{failures}"
        if first_to_say(folder / ".progress", line):  # jobs ending together count the same folder
            print(line + after, file=sys.stderr, flush=True)


def first_to_say(path: Path, line: str) -> bool:
    """Whether no other process of the sweep printed `line` last: the processes of jobs that end
    together (parallel workers, or a stop reaching every job at once) read the same counts, and
    each printed them. The last line said is kept in `path` under an exclusive lock; an unwritable
    folder prints anyway."""
    import fcntl

    try:
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            if f.read() == line:
                return False
            f.seek(0)
            f.truncate()
            f.write(line)
            return True
    except OSError:
        return True
