"""Run a named sweep, or summarize any multirun folder (docs/sweeps.md).

    python sweep.py list                                 presets in conf/sweep/
    python sweep.py <preset> [override ...]              run it (train.py -m, parallel launcher), then summarize
    python sweep.py border [override ...]                smallest hidden size per (cell, lag), by search
                                                         (conf/sweep/border.yaml, src/border/)
    python sweep.py summarize <multirun folder> [--metric M] [--threshold T]   (default: the preset's)
                                                [--x KEY] [--y KEY] [--out DIR]

The logic lives in src/sweeps/ and src/border/; this file only reads the command line.
"""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv: list[str]) -> int:
    from src.datamodules.tasks import register as register_tasks
    from src.models.node import register as register_model
    from src.sweeps.records import SweepError
    from src.sweeps.runner import COMMANDS, presets, run_preset
    from src.sweeps.summarize import summarize

    register_model()  # the model node's and the task families' defaults, before a preset is composed
    register_tasks()

    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("Presets:")
        width = max(map(len, presets())) + 2
        for name, about in presets().items():
            print(f"  {name:<{width}}{about}")
        return 0 if argv else 2
    try:
        if argv[0] == "list":
            width = max(map(len, presets())) + 2
            for name, about in presets().items():
                print(f"{name:<{width}}{about}")
            return 0
        if argv[0] == "summarize":
            p = argparse.ArgumentParser(prog="sweep.py summarize", description="Summarize a multirun folder.")
            p.add_argument("folder", help="the sweep folder (with multirun.yaml) that train.py -m printed")
            own = "(default: the sweep's summary.metric, which its preset sets; else test/exact)"
            p.add_argument("--metric", default=None, help=f"metric of the table, heatmap and 'solved' {own}")
            p.add_argument("--threshold", type=float, default=None,
                           help="solved: metric >= it (<= for loss, mse, mae; default: summary.threshold, else 0.99)")  # fmt: skip
            p.add_argument(
                "--x", default=None, help="swept key along the heatmap's x axis (default: summary.x, else model.hidden)"
            )
            p.add_argument(
                "--y", default=None, help="swept key along the heatmap's y axis (default: summary.y, else task.lag)"
            )
            p.add_argument("--out", default=None, help="folder for csv/md/png (default <folder>/summary)")
            a = p.parse_args(argv[1:])
            # SIGTERM ends the summary as Ctrl-C does: its temporary folder is removed on the way out
            before = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
            try:
                summarize(a.folder, metric=a.metric, threshold=a.threshold, out=a.out, x=a.x, y=a.y)
            except KeyboardInterrupt:
                print("interrupted: no summary written; an earlier one is as it was", file=sys.stderr)
                return 128 + signal.SIGINT
            finally:
                signal.signal(signal.SIGTERM, before)
            return 0
        if argv[0] == "border":  # a search, not a train.py -m grid
            from src.border.rounds import run_border

            code, _ = run_border(argv[1:])
            return code
        if argv[0].startswith("-") or argv[0] in COMMANDS:
            raise SweepError(
                f"unknown option {argv[0]!r}; use: sweep.py list | <preset> [overrides] | summarize <folder>."
            )
        code, _ = run_preset(argv[0], argv[1:])
        return code
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
