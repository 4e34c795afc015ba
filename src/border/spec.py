"""What a border search is: its settings (`Search`, from conf/sweep/border.yaml with the command
line on top, read by `parse`), the jobs it runs (`JobKey`, each job's overrides and config group
file), and the checks every job passes through train's own checks before any job starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.sweeps.judge import meets, rule
from src.sweeps.records import SweepError
from src.sweeps.runner import PRESET_DIR, ROOT

PRESET = PRESET_DIR / "border.yaml"

SEARCH_KEYS = (
    "model",
    "task.vocab",
    "task.lag",
    "task.delay",
    "seed",
    "border.min",
    "border.max",
    "border.resolution",
    "border.context",
    "border.share",
    "border.threshold",
    "border.metric",
)

OWNED_KEYS = ("model.hidden", "task.context", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.sweeper.params")


def ladder(lo: int, hi: int, resolution: float) -> list[int]:
    """The sizes searched: lo, then each next size the largest at most `resolution` times the last
    (and at least one more), up to hi, which is always included. resolution 1: every integer."""
    sizes = [lo]
    while sizes[-1] < hi:
        sizes.append(min(hi, max(sizes[-1] + 1, math.floor(sizes[-1] * resolution + 1e-9))))
    return sizes


@dataclass
class Search:
    cells: list[str]
    vocabs: list[int] | None  # None: the task's own vocab (resolved by check)
    lags: list[int]
    seeds: list[int]
    min: int
    max: int
    share: float
    threshold: float
    metric: str
    preset: str  # the grid preset whose training settings every job takes
    overrides: list[str] = field(default_factory=list)  # passed to every job
    resolution: float = 1.0
    context: str | None = None  # None: the preset's task.context; "lag+K" or a number
    framing: str = "window"  # the task's, read by check: what the bits demanded count
    axis: str = "lag"  # the task key searched along: task.lag (echo_lag) or task.delay (copy_memory)
    held: tuple[int, int] | None = None  # copy_memory's (symbols, categories), read by check

    def bits(self, lag: int, vocab: int) -> float:
        """Bits the state must hold at once: a delay line of the last `lag` symbols where every step
        has a target (label framing); the one symbol at a fixed place of the window otherwise, held
        for `lag` steps (window framing: the network can latch it and ignore the rest); copy_memory's
        symbols x log2(categories) whatever the delay (the delay only lengthens the hold)."""
        if self.held is not None:
            return self.held[0] * math.log2(self.held[1])
        return (lag if self.framing == "label" else 1) * math.log2(vocab)

    def bits_text(self) -> str:
        if self.held is not None:
            return (
                f"symbols x log2(categories) = {self.held[0]} x log2({self.held[1]}) (copy_memory: every symbol "
                "held until its recall, delay + symbols steps later; the delay lengthens the hold, not the bits)"
            )
        if self.framing == "label":
            return "lag x log2(vocab) (label framing: a target at every step, so a delay line of the last lag symbols)"
        return (
            "log2(vocab) (window framing: one symbol at a fixed place of the window, held for lag steps; a delay "
            "line would need lag x log2(vocab))"
        )

    @property
    def sizes(self) -> list[int]:
        return ladder(self.min, self.max, self.resolution)

    def sizes_text(self) -> str:
        sizes = self.sizes
        return f"{self.min}..{self.max} (every integer)" if len(sizes) == self.max - self.min + 1 else str(sizes)

    def context_for(self, lag: int) -> int | None:
        if self.context is None:
            return None
        m = re.fullmatch(r"lag\s*\+\s*(\d+)", self.context)
        return lag + int(m.group(1)) if m else int(self.context)

    def rule(self) -> str:
        return rule(self.metric, self.threshold)

    def solved(self, metrics: dict[str, Any]) -> bool:
        return bool(meets(metrics.get(self.metric), self.metric, self.threshold))


def _ints(key: str, given: tuple[str, list[str]]) -> list[int]:
    """Whole numbers from one override's values (`task.vocab=10,100`, `task.lag=range(1,5)`)."""
    value, values = given
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise SweepError(f"{key}={value} must be whole numbers separated by commas.") from None
    if key == "task.vocab" and min(out) < 2:
        raise SweepError(
            f"task.vocab={value} must be whole numbers of at least 2: a stream needs 2 symbols, and the bits "
            "demanded are lag x log2(vocab)."
        )
    if not out or min(out) < (0 if key == "seed" else 1):
        raise SweepError(f"{key}={value} must be {'non-negative' if key == 'seed' else 'positive'} whole numbers.")
    if len(set(out)) < len(out):
        raise SweepError(f"{key}={value} names a value twice.")
    return out


def read_overrides(overrides: Sequence[str]) -> tuple[dict[str, tuple[str, list[str]]], list[str]]:
    """(search key -> (its text, its values), the other overrides, passed to every job), read by
    Hydra's own override parser, so a value is what it is to train.py (`task.lag=range(1,5)`,
    quoting, `null`). A key a job's file sets is refused: the command line would win over it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    given: dict[str, tuple[str, list[str]]] = {}
    rest = []
    for text in overrides:
        if text.startswith("-") or "=" not in text:
            raise SweepError(f"sweep.py border takes key=value overrides, not {text!r}.")
        try:
            o = parser.parse_override(text)
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        except HydraException as err:
            raise SweepError(f"the override {text!r} cannot be read: {str(err).splitlines()[0]}") from None
        if o.key_or_group in SEARCH_KEYS and not (o.is_add() or o.is_delete()):
            given[o.key_or_group] = (text.split("=", 1)[1], ["" if o.value() is None else v for v in values])
        elif o.key_or_group in OWNED_KEYS:
            raise SweepError(
                f"{text.split('=', 1)[0]} is set by the search for each job; the sizes are border.min, border.max "
                "and border.resolution, the window border.context (e.g. border.context=lag+1)."
            )
        else:
            rest.append(text)
    return given, rest


def _cells(given: dict[str, tuple[str, list[str]]], spec: dict[str, Any]) -> list[str]:
    cells = given["model"][1] if "model" in given else list(spec["cells"])
    known = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    for c in cells:
        if c not in known:
            raise SweepError(f"model={c} is not a cell of conf/model/; choose from: {', '.join(known)}.")
    if len(set(cells)) < len(cells):
        raise SweepError(f"model={given['model'][0]} names a cell twice.")
    return cells


def _axis(given: dict[str, tuple[str, list[str]]]) -> str:
    """The task key searched along: task.lag (echo_lag's window) or task.delay (copy_memory)."""
    if "task.lag" in given and "task.delay" in given:
        raise SweepError(
            "task.lag and task.delay are both given; a search steps along one: task.lag (echo_lag's window) or "
            "task.delay (copy_memory's blanks)."
        )
    if "task.delay" not in given:
        return "lag"
    for key, why in (
        ("task.vocab", "copy_memory's vocab is task.categories + 2 (set task.categories=...)"),
        ("border.context", "copy_memory's length follows from the delay (delay + 2 x task.symbols)"),
    ):
        if key in given:
            raise SweepError(f"{key}={given[key][0]} does not apply to a search along task.delay: {why}.")
    return "delay"


def _setting(given: dict[str, tuple[str, list[str]]], key: str, default: Any) -> tuple[str, list[str]]:
    """An override's (text, values), or the preset's value as if written on the command line."""
    if key in given:
        return given[key]
    text = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    return text, text.split(",")


def parse(overrides: Sequence[str]) -> Search:
    """The preset with the command line on top; bad input is one sentence (SweepError)."""
    spec = yaml.safe_load(PRESET.read_text())["border"]
    given, rest = read_overrides(overrides)
    cells = _cells(given, spec)
    vocabs = _ints("task.vocab", given["task.vocab"]) if "task.vocab" in given else None
    if vocabs is None and spec.get("vocabs"):
        vocabs = _ints("task.vocab", _setting(given, "task.vocab", spec["vocabs"]))
    axis = _axis(given)
    lags = sorted(_ints(f"task.{axis}", _setting(given, f"task.{axis}", spec["lags"])))
    seeds = _ints("seed", _setting(given, "seed", spec["seeds"]))
    lo = _ints("border.min", _setting(given, "border.min", spec["min"]))[0]
    hi = _ints("border.max", _setting(given, "border.max", spec["max"]))[0]
    if lo > hi:
        raise SweepError(f"border.min={lo} is above border.max={hi}; the sizes searched are border.min..border.max.")
    try:
        need, threshold, resolution = (
            float(_setting(given, key, spec.get(key.split(".")[1], 1.0))[0])
            for key in ("border.share", "border.threshold", "border.resolution")
        )
    except ValueError:
        raise SweepError("border.share, border.threshold and border.resolution must be numbers.") from None
    if not 0 < need <= 1:
        raise SweepError(f"border.share={need} must lie in (0, 1]: the share of seeds a size must solve.")
    if not 1 <= resolution <= 4:
        raise SweepError(
            f"border.resolution={resolution} must lie in [1, 4]: the largest ratio of neighbouring sizes "
            "(1: every integer, 1.41: about two sizes per doubling)."
        )
    context = given["border.context"][0] if "border.context" in given else spec.get("context")
    context = None if context in (None, "null", "") else str(context)
    if context is not None and not re.fullmatch(r"lag\s*\+\s*\d+|\d+", context):
        raise SweepError(
            f"border.context={context} must be a window length (e.g. 9) or lag+K (e.g. lag+1: the shortest "
            "window that holds the target); null keeps the preset's."
        )
    metric = given["border.metric"][0] if "border.metric" in given else spec["axes"][axis]["metric"]
    if not re.fullmatch(r"test/\w+", metric):
        raise SweepError(
            f"border.metric={metric} must be a test metric a job records, e.g. test/exact (every target of a "
            "window right) or test/acc (each target)."
        )
    preset, rest = spec["axes"][axis]["preset"], [*spec.get("overrides", []), *rest]
    search = Search(cells, vocabs, lags, seeds, lo, hi, need, threshold, metric, preset, rest)
    search.resolution, search.context, search.axis = resolution, context, axis
    return search


@dataclass(frozen=True)
class JobKey:
    cell: str
    vocab: int
    lag: int
    hidden: int
    seed: int
    axis: str = "lag"  # what `lag` holds: task.lag, or copy_memory's task.delay

    @property
    def name(self) -> str:
        return job_name(self.cell, self.vocab, self.lag, self.hidden, self.seed, self.axis)


def job_name(cell: str, vocab: int, lag: int, hidden: int, seed: int, axis: str = "lag") -> str:
    return f"{cell}_v{vocab}_{axis}{lag}_h{hidden}_s{seed}"


def job_overrides(search: Search, key: JobKey | tuple[str, int | None, int, int, int]) -> list[str]:
    """What sets one job apart from the preset, as train.py overrides (also the group file's content)."""
    cell, vocab, lag, hidden, seed = (
        (key.cell, key.vocab, key.lag, key.hidden, key.seed) if isinstance(key, JobKey) else key
    )
    context = search.context_for(lag)
    given = vocab is not None and search.axis == "lag"  # copy_memory's vocab follows from task.categories
    out = [f"model={cell}", *([f"task.vocab={vocab}"] if given else []), f"task.{search.axis}={lag}"]
    out += [*([f"task.context={context}"] if context is not None else [])]
    if context is not None and "task.framing=label" in search.overrides:
        out.append(f"task.out_len={context}")  # label framing: a target (or a masked step) at every step
    out += [f"model.hidden={hidden}", f"seed={seed}"]
    return out


def cell_overrides(search: Search) -> list[str]:
    """The user's `model.<key>=<value>` overrides: they belong to the cell's config (`model.r_min`
    exists only for lru), which a round's runner has not chosen when it applies its command line
    (the cell comes with each job), so they travel in the job's file."""
    return [o for o in search.overrides if o.startswith("model.") and "=" in o]


def job_file(search: Search, key: JobKey) -> str:
    """The config group option `+border_job=<name>`: the job's own settings, after the preset."""
    values: dict[str, Any] = {}
    for o in [*cell_overrides(search), *job_overrides(search, key)[1:]]:
        path, value = o.split("=", 1)
        node = values
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    text = yaml.safe_dump(values, sort_keys=False)
    return f"# @package _global_\n# {key.name}: written by sweep.py border\ndefaults:\n  - override /model: {key.cell}\n{text}"


def compose_job(search: Search, cell: str, vocab: int | None, lag: int, hidden: int, seed: int, folder: Path) -> Any:
    """The config `train.py +sweep=<preset> <the job's overrides>` would run (vocab None: the task's own)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    job = job_overrides(search, (cell, vocab, lag, hidden, seed))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+sweep={search.preset}", "progress=false", *search.overrides, *job])
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    return cfg


def check(search: Search, folder: Path) -> None:
    """Every (cell, vocab, lag) at both ends of the sizes through train's own checks, before any
    job; a search without `task.vocab` takes the vocab the task's config gives."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from src.run_config import validate
    from src.schema import ConfigError

    for cell in search.cells:
        for vocab in search.vocabs or [None]:
            for lag in search.lags:
                for h in (search.min, search.max):
                    try:
                        cfg = compose_job(search, cell, vocab, lag, h, search.seeds[0], folder)
                        task = validate(cfg)[0]
                    except (HydraException, OmegaConfBaseException, ConfigError) as err:
                        reason = str(err).strip().splitlines()[0].rstrip(".")
                        given = f" task.vocab={vocab}" if vocab is not None else ""
                        raise SweepError(
                            f"the job model={cell}{given} task.{search.axis}={lag} model.hidden={h} would fail: {reason}."
                        ) from None
    # what the task's own class made of the config (copy_memory's vocab: categories, blank, delimiter)
    if search.vocabs is None:
        search.vocabs = [task.vocab]
    search.framing = task.framing
    if search.axis == "delay":
        if task.family != "copy_memory":
            raise SweepError(
                f"task.delay steps copy_memory's blanks; the preset {search.preset} trains task {task.name}, "
                "which has no delay."
            )
        search.held = (task.symbols, task.categories)
    elif search.framing == "window" and task.out_len != 1:
        raise SweepError(
            f"sweep.py border counts the bits of one target symbol in a window; task.out_len={task.out_len} "
            "is not supported (use task.framing=label for a target at every step)."
        )


LAUNCH_KEYS = ("hydra/launcher", "hydra.launcher.")  # where jobs run, not what they train


def shaping(overrides: Sequence[str]) -> list[str]:
    """The overrides that shape what jobs train, not where they run."""
    return [o for o in overrides if not o.lstrip("+~").startswith(LAUNCH_KEYS)]


def settings(search: Search) -> dict[str, Any]:
    """What shapes every job beyond its cell, vocab, lag, size and seed (not where it runs: a
    search started here may go on on SLURM)."""
    return {"preset": search.preset, "context": search.context, "overrides": shaping(search.overrides)}
