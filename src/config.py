"""Config checks: every user-facing key is validated here, before anything is built.

Each failure is one sentence naming the key, the value given and what is allowed, raised as
`ConfigError` so that `train.py` can print it and exit non-zero before any work starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from src.schema import ConfigError  # noqa: F401  (re-exported: one error class for every check)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}.")
    return value


def _int(key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}={value!r} is not allowed; it must be an integer >= {low}.")
    return value


def _float(key: str, value: Any, low: float, high: float = math.inf, low_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value < high
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        upper = f" and < {high}" if math.isfinite(high) else ""
        raise ConfigError(f"{key}={value!r} is not allowed; it must be a number {bound}{upper}.")
    return float(value)


@dataclass(frozen=True)
class Task:
    """What the data stream produces and what the model must predict (vocabulary: design.md).

    window framing: x (batch, context) -> y (batch, out_len), the target block ending `lag` steps
    before the newest observation (before the window when `target_outside_window`; stateful: row i of
    batch k+1 starts from the final state of row i of batch k, as a stateful Keras layer). label
    framing: x (batch, T) -> y (batch, T) with y_t = f(x_{t-lag}) and steps t < lag (since the last
    reset) masked. With pad_start, window framing also keeps the incomplete windows at a sequence's
    start, left-padded with the pad symbol `vocab`, their targets in the padding masked. Every task is a subclass
    in its own file of src/datamodules/tasks/ (its rules, generation, baseline and typed input;
    the protocol is in that package's docstring); this class holds what the trainer reads.
    """

    name: str
    stream: str
    vocab: int
    context: int
    lag: int
    out_len: int
    framing: str
    transform: str
    encoding: str
    objective: str
    scale: float
    step: int
    start_low: int
    start_high: int
    windows_per_sequence: int
    stateful: bool
    seq_len: int
    chunk: int
    target_outside_window: bool = False  # window framing: let lag + out_len exceed context (opt-in)
    pad_start: bool = False  # window framing keeps a sequence's first windows, missing steps = symbol `vocab`

    @property
    def stateful_windows(self) -> bool:
        """Keras' stateful windows: row i of batch k+1 continues row i of batch k (window framing)."""
        return self.stateful and self.framing == "window"

    @property
    def stateful_stream(self) -> bool:
        """Stateful label streams: batches of `chunk` steps of `batch` parallel streams."""
        return self.stateful and self.framing == "label"

    @property
    def alphabet(self) -> int:
        """Input symbols: the vocabulary, plus the pad symbol (index `vocab`) with pad_start. (Not
        `symbols`: copy_memory's field of that name, the count it copies, shadowed it, and the
        memory probe read a copy task of 3 symbols as a vocab of 3.)"""
        return self.vocab + self.pad_start

    @property
    def rows_per_sequence(self) -> int:
        """Windows cut from one sequence: `windows_per_sequence` whole ones, plus with pad_start the
        context - 1 incomplete ones at its start (left-padded)."""
        return self.windows_per_sequence + (self.context - 1 if self.pad_start else 0)

    @property
    def n_classes(self) -> int:
        return self.vocab

    @property
    def features(self) -> int:
        """Input features per step for encoding=features (a task family's real-valued inputs)."""
        return 1

    @property
    def is_integer_valued(self) -> bool:
        """Targets are integers, so accuracy and exact match are defined for any objective."""
        return True

    @property
    def value_range(self) -> tuple[int, int]:
        """Smallest and largest value the stream can emit (inputs and targets)."""
        return 0, self.vocab - 1

    def chance_on(self, y: Any, mask: Any) -> dict[str, float]:
        """The memoryless baseline on an evaluation set (y, mask): the task's `chance()`, unless
        it depends on the set (the mean target of a stream task's regression: tasks/echo.py)."""
        return self.chance()

    def check_value(self, word: str, v: float) -> None:
        """A typed value must be one of the task's symbols (a progression: any number)."""
        if not v.is_integer() or not 0 <= v < self.vocab:
            raise ConfigError(
                f"input value {word!r} is outside the vocabulary of task {self.name}; use integers in [0, {self.vocab - 1}]."
            )

    def parse(self, words: list[str]) -> list[float] | list[int]:
        """predict.py's typed window, one integer per step by default, checked against the task:
        values it emits (`check_value`, `value_range`); exactly `context` of them for window framing,
        more than `lag` for label framing (a family with other input overrides it: tasks/adding.py)."""
        values = []
        low, high = self.value_range
        for w in words:
            try:
                v = float(w)
            except ValueError:
                raise ConfigError(f"input value {w!r} is not a number.") from None
            if not math.isfinite(v):
                raise ConfigError(f"input value {w!r} is not a finite number.")
            self.check_value(w, v)
            if not low <= v <= high:  # the values the stream emits: what the network was trained on
                raise ConfigError(
                    f"input value {w!r} is outside the values task {self.name} was trained on; use numbers in "
                    f"[{low}, {high}]."
                )
            values.append(int(v) if v.is_integer() else v)
        if self.framing == "label" and len(values) <= self.lag:
            raise ConfigError(
                f"got {len(values)} input values, but task {self.name} targets the value task.lag={self.lag} steps "
                f"back, so no step would have a target; type at least {self.lag + 1}."
            )
        if self.pad_start and not 1 <= len(values) <= self.context:
            raise ConfigError(
                f"got {len(values)} input values, but task {self.name} reads windows of task.context={self.context}, "
                f"left-padded when shorter (task.pad_start=true); type 1 to {self.context}."
            )
        if self.framing == "window" and not self.pad_start and len(values) != self.context:
            raise ConfigError(
                f"got {len(values)} input values, but task {self.name} reads windows of task.context={self.context}; "
                f"type exactly {self.context}."
            )
        return values


def check_known_keys(node: str, given: dict, known: set[str]) -> None:
    """A key the code never reads (a typo such as `+task.lagg=2`) would be ignored silently.
    node: the dotted path of the node, or "" for the top level of the config."""
    unknown = sorted(set(given) - known)
    if unknown:
        key, kind = (f"{node}.{unknown[0]}", node) if node else (unknown[0], "top-level")
        article = "an" if kind[0] in "aeiou" else "a"
        raise ConfigError(
            f"{key} is not {article} {kind} option, so it would be ignored; the {kind} options are: {', '.join(sorted(known))}."
        )


def make_task(task: Any, tbptt: int = 1) -> Task:
    """Validate the `task` config node and freeze it. `task.family` names the file of
    src/datamodules/tasks/ whose `TASK` owns the rules; a config saved before families (resume,
    eval.py) has none: `progression` for an arithmetic stream, `echo` otherwise. `tbptt` (the
    model's) fills a stateful task's null `task.chunk`."""
    from src.datamodules.tasks import family

    g = dict(task)
    name = g.get("family") or ("progression" if g.get("stream") == "arithmetic" else "echo")
    return family(name).from_config(g, tbptt=tbptt)
