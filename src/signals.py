"""The one owner of SIGINT and SIGTERM in a train.py process.

Installed by train.py before anything else (imports, Hydra, the config), so a signal is never
lost to Python's default (a KeyboardInterrupt traceback) or to Lightning's SIGTERM handler, whose
`SIGTERMException` is a bare SystemExit: exit 0, no checkpoint, no record (see `disown`).

The first signal only sets a flag. Training stops at the next batch boundary with a checkpoint
(`src.reliability.RunGuard`); every other phase (start-up, validation, test, the end-of-run
writing) calls `check` where it can stop cleanly. A second signal stops at once: `SignalStop` is
raised wherever the process is. Either way the process exits with 128 + the signal number and the
run folder's metrics.json says `interrupted`.

Light: no torch, no Lightning at import.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

_received: list[int] = []


class SignalStop(BaseException):
    """A signal asked this process to stop. A BaseException, so no `except Exception` on the way
    (Hydra's, Lightning's, a sweep's) swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def install() -> None:
    """Own SIGINT and SIGTERM for the rest of the process (a no-op outside the main thread, where
    Python allows no handler)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: Any) -> None:
    _received.append(signum)
    if len(_received) > 1:  # the user insists
        raise SignalStop(signum)
    if all(os.environ.get(v, "0") == "0" for v in ("LOCAL_RANK", "NODE_RANK")):
        print(
            f"\n{signal.Signals(signum).name}: stopping at the next batch boundary with a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )


def received() -> int | None:
    """The first signal received, if any."""
    return _received[0] if _received else None


def check() -> None:
    """Stop here (raise `SignalStop`) if a signal has arrived."""
    if _received:
        raise SignalStop(_received[0])


def finish() -> None:
    """At the very end of a run that completed: signals from now on are ignored (Python would
    restore the default handlers while it shuts down, and a late SIGTERM would kill the exiting
    process); one that arrived before still ends it with `SignalStop`."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    check()


def disown(trainer: Any) -> None:
    """Keep Lightning's signal connector from installing its SIGTERM handler for this trainer's
    fit/test, so the signal stays with `install`'s handler."""
    trainer._signal_connector.register_signal_handlers = lambda: None
