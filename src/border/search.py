"""The search algorithm: a ladder of sizes, a galloping-then-bisecting search along it, the verdict
of a size from its seeds, and a `Lane` that drives one (cell, vocab) through its lags, asking for
the jobs it needs next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.border.spec import JobKey, Search


def ladder_search(n: int, start: int = 0) -> Generator[int, bool, tuple[int | None, int | None]]:
    """Search indices 0..n-1 of a ladder whose verdict is monotone (fails below some index, solves
    from it up): yields the index to try, is sent whether it solves, and returns (smallest solving
    index or None, largest failing index seen or None). From `start` it gallops (steps 1, 2, 4, ...)
    up while sizes fail, or down while they solve, then bisects: about 2 log2 of the distance
    between the start and the border."""
    start = min(max(start, 0), n - 1)
    solving: int | None = None
    failing: int | None = None
    step = 1
    if (yield start):
        solving = start
        while solving > 0:
            i = max(solving - step, 0)
            if (yield i):
                solving, step = i, step * 2
            else:
                failing = i
                break
    else:
        failing = start
        while True:
            if failing == n - 1:
                return None, failing
            i = min(failing + step, n - 1)
            if (yield i):
                solving = i
                break
            failing, step = i, step * 2
    while failing is not None and solving - failing > 1:
        mid = (failing + solving) // 2
        if (yield mid):
            solving = mid
        else:
            failing = mid
    return solving, failing


def drive(search: Generator[int, bool, Any], solves: Callable[[int], bool]) -> Any:
    """Run a ladder_search with a synchronous `solves(index)`; returns what the search returns."""
    try:
        i = next(search)
        while True:
            i = search.send(solves(i))
    except StopIteration as stop:
        return stop.value


def gallop_bisect(lo: int, hi: int, solves: Callable[[int], bool]) -> tuple[int | None, int | None]:
    """(smallest solving size, largest failing size seen) over every integer lo..hi, from lo."""
    found, failing = drive(ladder_search(hi - lo + 1), lambda i: solves(lo + i))
    return (None if found is None else lo + found), (None if failing is None else lo + failing)


def needed(share_: float, n: int) -> int:
    """Seeds of n that must solve for a size to solve: at least share x n, and at least 1."""
    return max(1, math.ceil(share_ * n - 1e-9))


def verdict(ok: Sequence[bool], n: int, need: int) -> bool | None:
    """Whether a size solves once `ok` (the verdicts of the seeds run so far, of n) settles it:
    True at `need` solving seeds, False when too few seeds are left to get there, else None."""
    if sum(ok) >= need:
        return True
    if len(ok) - sum(ok) > n - need:
        return False
    return None


@dataclass
class Point:
    """The search of one (cell, vocab, lag): every job it ran, and what the bisection concluded."""

    cell: str
    vocab: int
    lag: int
    jobs: list[dict[str, Any]] = field(default_factory=list)  # one record per job, in the order read
    solving: int | None = None
    failing: int | None = None
    done: bool = False


def job_record(search: Search, key: JobKey, metrics: dict[str, Any]) -> dict[str, Any]:
    memory = (metrics.get("diagnostics") or {}).get("memory") or {}
    return {
        "hidden": key.hidden,
        "seed": key.seed,
        "ok": search.solved(metrics),
        "status": metrics.get("status"),
        "value": metrics.get(search.metric),
        "step": (metrics.get("target") or {}).get("step"),
        "steps": metrics.get("steps"),
        "stopped_by": metrics.get("stopped_by"),
        "params": metrics.get("params"),
        "weights": (metrics.get("weights") or {}).get("test") or metrics.get("tested_checkpoint"),
        "memory": memory.get("score"),
        "memory_delays": memory.get("delays"),
        "memory_kind": memory.get("kind"),
        "memory_chance": memory.get("chance"),
    }


class Lane:
    """One (cell, vocab): its lags in increasing order, each a ladder search that starts at the
    border the previous lag found (a longer lag rarely needs fewer units; the search still checks
    both sides). `wants(records)` says which jobs it needs next; None of them: it is finished."""

    def __init__(self, search: Search, cell: str, vocab: int):
        self.search, self.cell, self.vocab = search, cell, vocab
        self.sizes = search.sizes
        self.need = needed(search.share, len(search.seeds))
        self.points: list[Point] = []
        self.results: dict[JobKey, dict[str, Any]] = {}
        self.start = 0
        self.lags = list(search.lags)
        self._next_lag()

    def _next_lag(self) -> None:
        if not self.lags:
            self.point = None
            return
        self.point = Point(self.cell, self.vocab, self.lags.pop(0))
        self.points.append(self.point)
        self.gen = ladder_search(len(self.sizes), self.start)
        self.index: int | None = next(self.gen)

    def key(self, hidden: int, seed: int) -> JobKey:
        assert self.point is not None
        return JobKey(self.cell, self.vocab, self.point.lag, hidden, seed, self.search.axis)

    def _read(self, key: JobKey, records: dict[str, tuple[Path, dict[str, Any]]]) -> bool:
        if key in self.results:
            return True
        if key.name not in records:
            return False
        self.results[key] = records[key.name][1]
        assert self.point is not None
        self.point.jobs.append(job_record(self.search, key, self.results[key]))
        return True

    def wants(self, records: dict[str, tuple[Path, dict[str, Any]]]) -> list[JobKey]:
        seeds = self.search.seeds
        while self.point is not None:
            if self.index is not None:  # searching: the seeds at this size until the verdict settles
                h = self.sizes[self.index]
                ok: list[bool] = []
                for s in seeds:
                    if not self._read(self.key(h, s), records):
                        break
                    ok.append(self.search.solved(self.results[self.key(h, s)]))
                decided = verdict(ok, len(seeds), self.need)
                if decided is None:
                    more = min(self.need - sum(ok), len(seeds) - self.need + 1 - (len(ok) - sum(ok)))
                    return [self.key(h, s) for s in seeds[len(ok) : len(ok) + more]]
                try:
                    self.index = self.gen.send(decided)
                except StopIteration as stop:
                    solving, failing = stop.value
                    self.point.solving = None if solving is None else self.sizes[solving]
                    self.point.failing = None if failing is None else self.sizes[failing]
                    self.index = None
                    self.start = len(self.sizes) - 1 if solving is None else solving
                continue
            # settled: every seed at the sizes on both sides of the border, for their intervals
            bounds = [h for h in (self.point.solving, self.point.failing) if h is not None]
            missing = [self.key(h, s) for h in bounds for s in seeds if not self._read(self.key(h, s), records)]
            if missing:
                return missing
            self.point.done = True
            self._next_lag()
        return []
