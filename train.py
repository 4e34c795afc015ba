"""Hydra entry point: `python train.py [group=option ...] [key=value ...]` (README: a tour; docs/configuration.md: overrides).

Heavy imports (torch, Lightning) happen inside `src.run.train`, so `--help` and config errors
answer at once. Exit codes: 0 done, 1 the run failed (message on stderr, metrics.json says
`failed`), 2 bad input (nothing was written), 128 + signal number after a clean Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # first of all: from here on a signal ends the process 128 + its number
    from src import signals

    signals.install()
    signals.own_tree()  # its jobs (launcher workers, DDP ranks) share its stop

import secrets  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

# A random suffix keeps two runs started in the same second in separate folders; cached so every
# reference within one process resolves to the same value.
OmegaConf.register_new_resolver("uid", lambda: secrets.token_hex(3), use_cache=True)
# What a run trains, for its folder name (so TensorBoard's run names say it): task, cell, and the
# topology where one was chosen (`auto` resolves later, from the task).
OmegaConf.register_new_resolver("trained", lambda *parts: "_".join(str(p) for p in parts if p not in (None, "auto")))

from src.datamodules.tasks import register as register_tasks  # noqa: E402
from src.models.node import register as register_model  # noqa: E402

# Before Hydra composes: the model node's and each task family's defaults, which the conf/model and
# conf/task yamls name first in their defaults lists.
register_model()
register_tasks()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from src import signals

    # A launcher's worker process (joblib's loky, submitit) runs this without the __main__ block
    # above: without its own handlers a SIGTERM to the worker would kill the job unrecorded.
    signals.install()
    from src.hardware import is_primary
    from src.launch import RunFailed, RunInterrupted, ddp_job, remove_fresh_run_dir, resumed_config
    from src.run import record_failure, train
    from src.schema import ConfigError

    cfg = resumed_config(cfg)  # a resume trains the run's saved config
    from src.sweeps.callbacks import already_run

    recorded = already_run(cfg)  # a sweep going on after a hard crash: jobs already run stay as they are
    if recorded is not None:
        value = recorded.get(cfg.optimized_metric)
        return value if isinstance(value, (int, float)) else None
    if signals.in_worker() and signals.received() is not None:
        # the sweep was stopped before this job began (a launcher's worker, handed the job after the
        # runner's signal): it is not started, and leaves no folder; the runner ends the sweep
        from hydra.core.hydra_config import HydraConfig

        from src.launch import remove_if_untouched

        remove_if_untouched(Path(str(HydraConfig.get().runtime.output_dir)))
        return None

    # DDP ranks > 0 stop with rank 0 (the stop is agreed across ranks), which reports it; exiting 0
    # keeps Lightning's process observer from killing rank 0 before it has written metrics.json.
    primary = is_primary()
    try:
        with ddp_job(cfg):
            metrics, _ = train(cfg)
    except ConfigError as err:
        if not primary:
            sys.exit(0)
        print(f"error: {err}", file=sys.stderr)
        if not record_failure(cfg, err):  # single run: stop with a non-zero exit
            remove_fresh_run_dir()
            sys.exit(2)
        return None
    except RunInterrupted as err:  # ends a sweep too: the user asked to stop
        if primary:
            print(f"interrupted: {err}", file=sys.stderr)
        if signals.in_worker():  # recorded; the runner ends the sweep (an exit here would make joblib
            return None  # kill the other workers mid-job, before they write their records)
        sys.exit(128 + err.signum if primary else 0)
    except RunFailed as err:
        if not primary:
            sys.exit(0)
        print(f"error: {err}", file=sys.stderr)
        if not record_failure(cfg, err):
            sys.exit(1)
        return None
    except Exception as err:  # in a sweep, one failed job must not end the others
        if not record_failure(cfg, err):
            raise
        return None
    return metrics.get(cfg.optimized_metric)


def record_interrupt(signum: int) -> None:
    """A signal that stopped the process outside `train`'s own record (start-up before `train`,
    or a signal after metrics.json was written): the run folder Hydra made says `interrupted`,
    unless its metrics.json already has a status (a completed run stays completed)."""
    import signal

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return  # before Hydra chose a run folder: nothing to record
    from src.checkpoints import run_status
    from src.files import write_json
    from src.hardware import is_primary

    out_dir = Path(str(HydraConfig.get().runtime.output_dir))
    if not is_primary() or not out_dir.is_dir() or run_status(out_dir) is not None:
        return
    last = out_dir / "checkpoints" / "last.ckpt"
    record = {"status": "interrupted", "signal": signal.Signals(signum).name, "step": None}
    try:
        write_json(out_dir / "metrics.json", {**record, "checkpoint": str(last) if last.exists() else None})
    except OSError:
        pass


if __name__ == "__main__":
    from src.command_line import template_habits
    from src.launch import check_plugins, resume_argv
    from src.schema import ConfigError

    try:
        try:  # before Hydra, which would otherwise create a new run folder for a resume
            sys.argv = template_habits(sys.argv)
            check_plugins(sys.argv)
            sys.argv = resume_argv(sys.argv)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        main()
        signals.finish()  # a signal after the run was recorded: still not exit 0
    except signals.SignalStop as stop:
        record_interrupt(stop.signum)
        print(f"interrupted: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
