"""The one owner of SIGINT and SIGTERM in a train.py process, and in the jobs it launches.

Installed by train.py before anything else (imports, Hydra, the config), so a signal is never
lost to Python's default (a KeyboardInterrupt traceback) or to Lightning's SIGTERM handler, whose
`SIGTERMException` is a bare SystemExit: exit 0, no checkpoint, no record (see `disown`).

The first signal only sets a flag. Training stops at the next batch boundary with a checkpoint
(`src.reliability.RunGuard`); every other phase (start-up, validation, test, the end-of-run
writing) calls `check` where it can stop cleanly. A second signal stops at once: `SignalStop` is
raised wherever the process is. Either way the process exits with 128 + the signal number and the
run folder's metrics.json says `interrupted`.

One stop for the whole tree. A `train.py -m` runner hands its jobs to other processes (loky
workers, submitit, DDP ranks), and a signal may reach only some of them: `kill <runner pid>`
reaches the runner alone, a process-group signal misses the workers a launcher starts after it.
So whichever process of the tree is signalled also writes the tree's stop file (named by the
top train.py in RNN_MEMORY_STOP_FILE, which its children inherit), and every process reads it
where it reads its own flag: a job running stops at its next batch, a job starting later stops
before it trains. The same signal reaching a process twice within `SAME_STOP_S` (through its
process group and from a parent that forwards it, or by the stop file and a process-group signal)
is one request, not the user insisting.

Light: no torch, no Lightning at import.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

STOP_FILE_ENV = "RNN_MEMORY_STOP_FILE"
OWNER_ENV = "RNN_MEMORY_STOP_OWNER"  # the pid of the process that named the stop file
SAME_STOP_S = 0.5  # one request delivered by two routes arrives within milliseconds

_received: list[int] = []  # the signals this process was sent, or the tree's stop it read
_stops: list[float] = []  # when a stop request came (time.monotonic): a signal, or the stop file read


class SignalStop(BaseException):
    """A signal asked this process to stop. A BaseException, so no `except Exception` on the way
    (Hydra's, Lightning's, a sweep's) swallows it. Picklable: a launcher's worker sends it back to
    the runner."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self) -> tuple[Any, ...]:
        return (SignalStop, (self.signum,))


def _ddp_rank_above_zero() -> bool:
    return any(os.environ.get(v, "0") != "0" for v in ("LOCAL_RANK", "NODE_RANK"))


def own_tree() -> None:
    """Called by train.py's top process (not by a DDP rank > 0, which belongs to rank 0's tree):
    a fresh stop file name for this process and the jobs it starts; removed when it exits."""
    if _ddp_rank_above_zero():
        return
    import atexit
    import secrets
    import tempfile

    path = Path(tempfile.gettempdir()) / f"rnn-memory-stop-{os.getpid()}-{secrets.token_hex(4)}"
    os.environ[STOP_FILE_ENV] = str(path)
    os.environ[OWNER_ENV] = str(os.getpid())
    atexit.register(path.unlink, missing_ok=True)


def in_worker() -> bool:
    """Whether this process runs a job for a `train.py -m` runner in another process (a loky or
    submitit worker): its stop is the job's, the runner ends the sweep."""
    if _ddp_rank_above_zero():
        return False  # a DDP rank > 0: it follows rank 0, which owns the run folder and its record
    owner = os.environ.get(OWNER_ENV)
    return owner is not None and owner != str(os.getpid())


def install() -> None:
    """Own SIGINT and SIGTERM for the rest of the process (a no-op outside the main thread, where
    Python allows no handler)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    if sys.unraisablehook is not _on_unraisable:
        _hooks.append(sys.unraisablehook)
        sys.unraisablehook = _on_unraisable


_hooks: list[Any] = []  # the unraisable hook `install` replaced
_redeliver: list[int] = []  # a stop lost in a finalizer, sent again: raise it, whatever the timing


def _on_unraisable(unraisable: Any) -> None:
    """A second signal's `SignalStop` raised while a finalizer ran (the garbage collector calls
    `__del__`s, such as Lightning's `Profiler.__del__`, at any point) cannot leave the finalizer:
    Python prints "Exception ignored in ..." and the stop is lost. Send it again, once the finalizer
    is done, instead of printing it."""
    if isinstance(unraisable.exc_value, SignalStop):
        import threading

        signum = unraisable.exc_value.signum
        _redeliver.append(signum)
        threading.Timer(0.02, os.kill, (os.getpid(), signum)).start()
        return
    (_hooks[-1] if _hooks else sys.__unraisablehook__)(unraisable)


def _on_signal(signum: int, frame: Any) -> None:
    if _redeliver:
        raise SignalStop(_redeliver.pop())
    now = time.monotonic()
    if _stops and now - _stops[-1] < SAME_STOP_S:
        return  # the same request by a second route
    _stops.append(now)
    if len(_stops) > 1:  # the user insists (after the first signal, or after the tree's stop file)
        raise SignalStop(signum)
    if not _received:
        _received.append(signum)
    stop_file = os.environ.get(STOP_FILE_ENV)
    if stop_file:
        try:
            Path(stop_file).write_text(str(signum))
        except OSError:  # a full disk: this process still stops; its jobs get the signal their own way
            pass
    if not _ddp_rank_above_zero():
        message = (
            f"\n{signal.Signals(signum).name}: stopping at the next batch boundary with a checkpoint "
            "(send it again to stop at once)\n"
        )
        try:  # os.write, not print: the signal may land while this process is printing
            os.write(2, message.encode())
        except OSError:
            pass


def received() -> int | None:
    """The first signal received, by this process or by any process of its tree (the stop file)."""
    if not _received:
        stop_file = os.environ.get(STOP_FILE_ENV)
        if stop_file and os.path.exists(stop_file):
            _stops.append(time.monotonic())
            try:
                _received.append(int(Path(stop_file).read_text() or signal.SIGTERM))
            except (OSError, ValueError):
                _received.append(signal.SIGTERM)
    return _received[0] if _received else None


def check() -> None:
    """Stop here (raise `SignalStop`) if a signal has arrived."""
    signum = received()
    if signum is not None:
        raise SignalStop(signum)


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


# -- the parent's side: sweep.py running train.py -m ------------------------------------------------
GRACE_S = 30.0  # a runner's jobs stop at a batch boundary within seconds; SLURM's KillWait is 30 s


def stop_with_parent() -> Any:
    """A `preexec_fn` for a runner started in its own session: on Linux the kernel sends it SIGTERM
    when the process that started it dies, however it dies. Without it a `kill -9` of sweep.py
    (an out-of-memory kill, a scheduler past its grace) left the runner and its jobs training on,
    unseen, in a folder a resumed search would then share. The SIGTERM stops them as any SIGTERM
    does: at a batch boundary, recorded `interrupted`. Elsewhere None (no such call)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    parent, prctl = os.getpid(), ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call above took effect
            os._exit(128 + signal.SIGTERM)

    return preexec


class Forward:
    """Owns SIGINT and SIGTERM in a process that runs `train.py -m` runners (sweep.py), for as long
    as it is entered. A runner is started in its own session (`start_new_session=True`), so a
    terminal's Ctrl-C reaches it only through here, once: the first signal goes to the runner (its
    stop file reaches the jobs), a repeated one to the runner's whole process group (the runner and
    its launcher's workers: stop at once). `got` keeps the signals, so the caller
    stops starting work; `wait` makes sure a stopped runner ends: one that has not exited
    `grace` seconds after a signal is sent it again (its jobs stop at once, recorded), and one
    still there `grace` seconds later is killed."""

    def __init__(self, grace: float = GRACE_S) -> None:
        self.got: list[int] = []
        self.first_at = 0.0  # time.monotonic() of the first signal
        self.grace = grace
        self.child: Any = None  # the runner (a subprocess.Popen) now running, if any
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Forward:
        self._old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.got:
            self.first_at = time.monotonic()
        self.got.append(signum)
        self._send(signum, group=len(self.got) > 1)

    def _send(self, signum: int, group: bool) -> None:
        """The first request goes to the runner alone: its stop file reaches the jobs, and a
        launcher's idle or starting worker (no handler yet) is not killed by it. A repeated one, and
        the escalation, go to the whole process group."""
        if self.child is not None and self.child.poll() is None:
            try:
                (os.killpg if group else os.kill)(self.child.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, proc: Any, poll: Any = None) -> int:
        """The runner's exit code (negative: killed by that signal), calling `poll()` every second
        while it runs."""
        import subprocess
        import sys

        self.child = proc
        if self.got:  # a signal came before the runner started
            self._send(self.got[0], group=False)
        escalated = 0
        try:
            while True:
                try:
                    return proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
                finally:
                    if poll is not None:
                        poll()
                waited = time.monotonic() - self.first_at if self.got else 0.0
                if escalated < 2 and waited > self.grace * (escalated + 1):
                    escalated += 1
                    then = "killing it" if escalated == 2 else "sending it again: its jobs stop at once"
                    name = signal.Signals(self.got[0]).name
                    print(f"the runner (pid {proc.pid}) has not stopped {waited:.0f} s after {name}; {then}",
                          file=sys.stderr, flush=True)  # fmt: skip
                    self._send(signal.SIGKILL if escalated == 2 else self.got[0], group=True)
        finally:
            self.child = None
