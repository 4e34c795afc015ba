"""How a job is judged: the `summary` node that says so (`Summary`: metric, threshold and the
heatmap's axes), what solving means (`rule`, `meets`, `solved`), the share of seeds that solve with
its 95% Wilson interval, and which weights the test metrics were measured on.

The Wilson interval is written out here rather than taken from scipy: `scipy.stats.binomtest(k,
n).proportion_ci(method="wilson")` uses z = 1.95996 where the tables were made with z = 1.96, which
moves printed bounds (1/9: 0.44 becomes 0.43), and importing scipy.stats costs seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, model_validator

from src.schema import ConfigError, Node, check
from src.sweeps.records import Job, Sweep, SweepError, load_yaml, number

TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "train.yaml"  # where summary's defaults live
AXIS = "it must be a swept key (e.g. model.hidden) or null"


class Summary(Node):
    """summary.*: how sweep.py judges a sweep of this config (conf/train.yaml sets the defaults, a
    preset its own). Checked with the rest of the config (`check(Summary, "summary", node,
    val_metrics=<the validation metrics the task logs>)`), so a preset or an override with a bad one fails before
    any job, not after the last; and for `sweep.py summarize`'s flags (`summary_for`)."""

    metric: Annotated[str, Field(min_length=1, json_schema_extra={"allowed": "it must be a metric such as test/exact"})]
    threshold: Annotated[float, Field(json_schema_extra={"allowed": "it must be a finite number"})]
    x: Annotated[str | None, Field(min_length=1, json_schema_extra={"allowed": AXIS})] = None
    y: Annotated[str | None, Field(min_length=1, json_schema_extra={"allowed": AXIS})] = None

    @model_validator(mode="after")
    def _logged(self, info: ValidationInfo) -> Summary:
        val = (info.context or {}).get("val_metrics")  # the task's, when a run's config is checked
        logged = logged_metrics(val) if val is not None else None
        if logged is not None and self.metric not in logged:
            raise ConfigError(
                f"summary.metric={self.metric!r} is not allowed; it must be a metric this task logs: {', '.join(logged)}."
            )
        return self


def logged_metrics(val_metrics: Iterable[str]) -> list[str]:
    """The test and val metrics a task logs, from its validation metrics (`val/acc`, ...)."""
    names = [m.split("/", 1)[1] for m in val_metrics]
    return [f"{split}/{n}" for split in ("test", "val") for n in names]


def summary_for(own: Mapping[str, Any], **flags: Any) -> Summary:
    """How to judge a sweep: its config's `summary.*` (`own`; conf/train.yaml's for a sweep made
    before the node existed) with `sweep.py summarize`'s flags (`metric=`, `threshold=`, ...; None:
    not given) on top. A bad flag is refused naming the flag (`--threshold=nan ...`)."""
    defaults = load_yaml(TRAIN_CONFIG)["summary"]
    given = {k: v for k, v in flags.items() if v is not None}
    merged = {**defaults, **{k: v for k, v in own.items() if k in Summary.model_fields}, **given}
    try:
        return check(Summary, "", merged)
    except ConfigError as err:
        key = str(err).split("=", 1)[0]
        raise SweepError(f"--{err}" if key in given else f"the sweep's summary.{err}") from None


LOWER_IS_BETTER = ("loss", "mse", "mae")  # a metric named */loss, */mse or */mae solves by going under


def lower_is_better(metric: str) -> bool:
    """An error metric (*/loss, */mse, */mae) solves by going under its threshold."""
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def rule(metric: str, threshold: float) -> str:
    """What solving means: `metric >= threshold`, or `<=` for an error (loss, mse, mae)."""
    return f"{metric} {'<=' if lower_is_better(metric) else '>='} {threshold}"


def meets(value: Any, metric: str, threshold: float) -> bool | None:
    """Whether a value of `metric` solves (see `rule`); None when it is not a number."""
    v = number(value)
    if v is None or math.isnan(v):
        return None
    return v <= threshold if lower_is_better(metric) else v >= threshold


def solved(job: Job, metric: str, threshold: float) -> bool | None:
    """None when the job has no value for the metric (failed or missing), else `meets`."""
    return meets(job.metrics.get(metric), metric, threshold) if job.status == "completed" else None


def weights_judged(tested: Iterable[str | None]) -> str:
    """Which weights test metrics were measured on, from the jobs' metrics.json (`weights.test`,
    else `tested_checkpoint`): src/run.py tests the checkpoint callback's best.ckpt, selected on
    validation, when there is one, else the final weights. E.g. `best.ckpt (lowest val/loss) in 4 jobs`."""
    counts: dict[str, int] = {}
    for which in tested:
        which = str(which or "unrecorded weights")
        m = re.match(r"(?:.*/)?(\S+\.ckpt) \(step \d+, (.+)\)$", which)
        which = f"{m.group(1)} ({m.group(2)})" if m else re.sub(r" \(step \d+\)$", "", which)
        counts[which] = counts.get(which, 0) + 1
    if not counts:
        return "no completed job"
    return ", ".join(f"{w} in {n} job{'s' if n > 1 else ''}" for w, n in counts.items())


def judged(sweep: Sweep) -> str:
    """weights_judged over the completed jobs of a sweep."""
    done = [j for j in sweep.jobs if j.status == "completed"]
    return weights_judged(j.metrics.get("weights.test") or j.metrics.get("tested_checkpoint") for j in done)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share k/n: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    with p = k/n; good at small n and at 0 or n successes, where p ± z sqrt(p(1-p)/n) collapses."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share(k: int, n: int) -> str:
    """`k/n [lo, hi]`: solved seeds of seeds with the 95% Wilson interval of the solve probability."""
    lo, hi = wilson(k, n)
    return f"{k}/{n} [{lo:.2f}, {hi:.2f}]"
