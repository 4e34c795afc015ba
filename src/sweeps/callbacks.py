"""The Hydra callbacks of a multirun (conf/hydra/default.yaml): job folders named by what sets each
job apart (`JobNames`), every stop of a job made visible and the sweep's ending printed
(`SweepOutcome`), and `already_run`, which keeps a sweep that goes on after its runner died from
running a recorded job again.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from src import signals
from src.sweeps.records import PID_FILE, STATUSES, SweepError, load_sweep, read_record, sweep_overrides

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
