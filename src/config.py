"""Config checks: every user-facing key is validated here, before anything is built.

Each failure is one sentence naming the key, the value given and what is allowed, raised as
`ConfigError` so that `train.py` can print it and exit non-zero before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

STREAMS = ("uniform", "arithmetic")
FRAMINGS = ("window", "label")
TRANSFORMS = ("identity", "invert", "next")
ENCODINGS = ("onehot", "embedding", "scalar")
OBJECTIVES = ("classification", "regression")
CELLS = ("rnn", "lstm", "gru", "lru", "mingru")  # src.models.cells.CELLS: a test keeps them equal
TOPOLOGIES = ("auto", "last", "aligned", "encdec", "attention", "vector", "one_to_one")  # + src.models.topologies
ATTENTION_SCORES = ("dot", "general")
CELL_OPTIONS = {"lru": ("r_min", "r_max", "max_phase")}  # keys of the model node only one cell reads
INITS = ("keras", "torch")


class ConfigError(ValueError):
    """A user-supplied config value that cannot work; the message is one sentence."""


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
    before the newest observation. label framing: x (batch, T) -> y (batch, T) with
    y_t = f(x_{t-lag}) and steps t < lag (since the last reset) masked.
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
        if self.stream == "arithmetic":
            return self.start_low, self.start_high + self.step * self.context
        return 0, self.vocab - 1


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
    """Validate the `task` config node and freeze it. `tbptt` fills a null `task.chunk`."""
    g = dict(task)
    if "family" in g:  # a task that is a unit of its own: its file checks it (src/datamodules/tasks/)
        from src.datamodules.tasks import FAMILIES

        return FAMILIES[_choice("task.family", g["family"], tuple(FAMILIES))].from_config(g)
    check_known_keys("task", g, {f.name for f in dataclasses.fields(Task)})
    stream = _choice("task.stream", g.get("stream", "uniform"), STREAMS)
    framing = _choice("task.framing", g.get("framing", "window"), FRAMINGS)
    transform = _choice("task.transform", g.get("transform", "identity"), TRANSFORMS)
    encoding = _choice("task.encoding", g.get("encoding", "onehot"), ENCODINGS)
    objective = _choice("task.objective", g.get("objective", "classification"), OBJECTIVES)
    vocab = g.get("vocab", 100)
    if isinstance(vocab, int) and not isinstance(vocab, bool) and vocab < 2:
        raise ConfigError(f"task.vocab={vocab!r} is not allowed; a stream needs at least 2 symbols (vocab >= 2).")
    vocab = _int("task.vocab", vocab, 2)
    context = _int("task.context", g.get("context"))
    lag = _int("task.lag", g.get("lag", 0), 0)
    out_len = _int("task.out_len", g.get("out_len", 1))
    scale = _float("task.scale", g.get("scale", 1.0), 0.0)
    step = _int("task.step", g.get("step", 10), -(10**9))
    start_low = _int("task.start_low", g.get("start_low", 0), -(10**9))
    start_high = _int("task.start_high", g.get("start_high", 99), start_low)
    wps = _int("task.windows_per_sequence", g.get("windows_per_sequence", 1))
    stateful = g.get("stateful", False)
    if not isinstance(stateful, bool):
        raise ConfigError(f"task.stateful={stateful!r} is not allowed; it must be true or false.")
    tbptt = _int("model.tbptt", tbptt)  # checked here first: it fills a null task.chunk below
    if tbptt > 1 and not stateful:
        raise ConfigError(
            f"model.tbptt={tbptt} only applies to task.stateful=true (a stateless model backpropagates "
            "through its whole window); use tbptt=1 or a stateful task."
        )
    seq_len = _int("task.seq_len", g.get("seq_len") or context)
    chunk = _int("task.chunk", g.get("chunk") or tbptt)
    if scale != 1.0 and encoding != "scalar" and objective == "classification":
        # scale divides scalar inputs and regression targets; anything else would ignore it silently
        raise ConfigError(
            f"task.scale={scale:g} has no effect with task.encoding={encoding!r} and "
            "task.objective='classification'; use scale=1, encoding=scalar or objective=regression."
        )

    if stream == "arithmetic":
        if transform != "next":
            raise ConfigError(f"task.transform={transform!r} is not allowed with task.stream=arithmetic; use next.")
        if encoding != "scalar" or objective != "regression":
            raise ConfigError(
                f"task.encoding={encoding!r} with task.objective={objective!r} is not allowed with "
                "task.stream=arithmetic: progression values have no vocabulary; use encoding=scalar, "
                "objective=regression."
            )
    elif transform == "next":
        raise ConfigError("task.transform='next' is not allowed with task.stream=uniform; use identity or invert.")
    if stream == "arithmetic" and framing != "window":
        raise ConfigError(
            f"task.framing={framing!r} is not allowed with task.stream=arithmetic: the target is the value "
            "after the window; use framing=window."
        )

    if framing == "window":
        if stateful:
            raise ConfigError(
                "task.stateful=true is not allowed with task.framing=window: state is carried across "
                "consecutive timesteps of a stream, so use framing=label."
            )
        if transform == "next" and (lag != 0 or out_len != 1):
            raise ConfigError(
                f"task.lag={lag} and task.out_len={out_len} are not allowed with transform=next; "
                "the target is the single value after the window (lag=0, out_len=1)."
            )
        if lag + out_len > context:
            raise ConfigError(
                f"task.lag + task.out_len = {lag} + {out_len} = {lag + out_len} exceeds task.context={context}: "
                "the target block would lie outside the window the model sees; use lag + out_len <= context."
            )
    else:
        if out_len != context:
            raise ConfigError(
                f"task.out_len={out_len} is not allowed with task.framing=label, which has a target at every "
                f"timestep; set out_len equal to task.context={context}."
            )
        if stateful and seq_len != context:
            # validation runs whole sequences from a reset state, with a target at every step
            raise ConfigError(
                f"task.seq_len={seq_len} differs from task.context={context}: a stateful model's context is "
                "the whole sequence since its last reset; set both (and out_len) to the same length."
            )
        horizon = seq_len if stateful else context
        if lag >= horizon:
            name = "task.seq_len" if stateful else "task.context"
            raise ConfigError(f"task.lag={lag} leaves no target inside {name}={horizon}; use lag < {horizon}.")
        if stateful and seq_len % chunk:
            raise ConfigError(
                f"task.chunk={chunk} does not divide task.seq_len={seq_len}; each fresh sequence must split "
                "into whole batches of chunk steps."
            )
        if stateful and tbptt > chunk:
            raise ConfigError(
                f"model.tbptt={tbptt} exceeds task.chunk={chunk}: gradients cannot flow back past the start "
                "of a batch; use tbptt <= chunk (or chunk=null, which follows tbptt)."
            )
    return Task(
        name=str(g.get("name", "custom")),
        stream=stream,
        vocab=vocab,
        context=context,
        lag=lag,
        out_len=out_len,
        framing=framing,
        transform=transform,
        encoding=encoding,
        objective=objective,
        scale=scale,
        step=step,
        start_low=start_low,
        start_high=start_high,
        windows_per_sequence=wps,
        stateful=stateful,
        seq_len=seq_len,
        chunk=chunk,
    )


def resolve_topology(topology: str, task: Task) -> str:
    """`auto` picks `last` for a single-step window target, `aligned` otherwise."""
    _choice("model.topology", topology, TOPOLOGIES)
    if topology == "auto":
        return "last" if task.framing == "window" and task.out_len == 1 else "aligned"
    if task.stateful and topology != "aligned":
        raise ConfigError(
            f"model.topology={topology!r} is not allowed with task.stateful=true: it needs the whole window "
            "at once, while stateful training feeds a stream step by step; use topology=aligned."
        )
    if topology == "last" and (task.out_len > 1 or task.framing == "label"):
        raise ConfigError(
            f"model.topology='last' cannot emit task.out_len={task.out_len} targets (one head on the final "
            "state gives one); use topology=aligned or encdec."
        )
    if topology in ("vector", "one_to_one") and task.framing == "label":
        raise ConfigError(
            f"model.topology={topology!r} is not allowed with task.framing=label: its readout emits a block of "
            "fixed size from a whole window, while label framing reads a target at every step of any length; "
            "use topology=aligned."
        )
    return topology


def check_lru_ring(r_min: Any, r_max: Any, max_phase: Any) -> None:
    """The LRU's eigenvalues lambda start with magnitudes uniform (in area) on the ring
    r_min <= |lambda| <= r_max inside the unit circle, where the recurrence is stable, and phases
    uniform in [0, max_phase]."""

    def real(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    rule = "(the ring the eigenvalue magnitudes start on: 0 <= r_min < r_max <= 1)"
    if not (real(r_max) and 0 < r_max <= 1):
        raise ConfigError(f"model.r_max={r_max!r} is not allowed; it must be a number > 0 and <= 1 {rule}.")
    if not (real(r_min) and 0 <= r_min < r_max):
        raise ConfigError(
            f"model.r_min={r_min!r} is not allowed; it must be a number >= 0 and < model.r_max={r_max!r} {rule}."
        )
    if not (real(max_phase) and 0 < max_phase <= 2 * math.pi):
        raise ConfigError(
            f"model.max_phase={max_phase!r} is not allowed; it must be a number > 0 and <= 2 pi = 6.2832 "
            "(the eigenvalue phases start uniform in [0, max_phase])."
        )


def check_model(model: Any, task: Task) -> dict[str, Any]:
    """Validate the `model` node; return the keyword arguments for the network."""
    m = dict(model)
    _choice("model.cell", m.get("cell"), CELLS)
    _int("model.hidden", m.get("hidden"))
    _int("model.layers", m.get("layers", 1))
    _float("model.dropout", m.get("dropout", 0.0), 0.0, 1.0, low_open=False)
    _choice("model.init", m.get("init", "keras"), INITS)
    _int("model.embedding_dim", m.get("embedding_dim", 16))
    _int("model.tbptt", m.get("tbptt", 1))
    topology = resolve_topology(m.get("topology", "auto"), task)
    if task.encoding == "embedding" and task.stream != "uniform":
        raise ConfigError("task.encoding='embedding' needs a uniform stream with a vocabulary; use scalar.")
    if "attention" in m and topology != "attention":
        raise ConfigError(
            f"model.attention={m['attention']!r} only applies to model.topology=attention, so it would be "
            f"ignored with topology={topology!r}; remove it or use model=attention."
        )
    if topology == "attention":
        m["attention"] = _choice("model.attention", m.get("attention", "general"), ATTENTION_SCORES)
    for cell, keys in CELL_OPTIONS.items():
        for key in keys:
            if key in m and m["cell"] != cell:
                raise ConfigError(
                    f"model.{key}={m[key]!r} only applies to model.cell={cell}, so it would be ignored with "
                    f"cell={m['cell']!r}; remove it or use model.cell={cell}."
                )
    if m["cell"] == "lru":
        check_lru_ring(m.get("r_min", 0.0), m.get("r_max", 1.0), m.get("max_phase", 2 * math.pi))
    m["topology"] = topology
    return m


DATA_KEYS = {"batch_size", "batches_per_epoch", "val_size", "test_size", "val_seed", "test_seed", "eval_batch_size",
             "num_workers", "overfit_batches"}  # fmt: skip


def check_data(data: Any, world_size: int = 1) -> None:
    """Validate the `data` node. `batch_size` is global: it must split evenly over the ranks."""
    d = dict(data)
    check_known_keys("data", d, DATA_KEYS)
    batch = _int("data.batch_size", d.get("batch_size"))
    _int("data.batches_per_epoch", d.get("batches_per_epoch"))
    _int("data.val_size", d.get("val_size"))
    _int("data.test_size", d.get("test_size"))
    _int("data.num_workers", d.get("num_workers", 0), 0)
    _int("data.eval_batch_size", d.get("eval_batch_size", 4096))
    _int("data.overfit_batches", d.get("overfit_batches", 0), 0)
    for key in ("val_seed", "test_seed"):  # numpy's SeedSequence takes non-negative integers
        seed = d.get(key, 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ConfigError(f"data.{key}={seed!r} is not allowed; it must be an integer in [0, 2**32).")
    if batch % world_size:
        raise ConfigError(
            f"data.batch_size={batch} does not split over {world_size} processes; use a multiple of {world_size}."
        )
    for key in ("val_size", "test_size"):
        if d[key] < world_size:
            raise ConfigError(f"data.{key}={d[key]} is smaller than the {world_size} processes that share it.")
