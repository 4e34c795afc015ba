"""Loggers: TensorBoard (the default view of a run), Weights & Biases and MLflow (optional extras:
`pip install -r requirements-loggers.txt`), and `record_run`, the end-of-run record (the chosen
hyperparameters, final metrics, sample predictions) written to whichever loggers a run has.

What a point's step means, for every logger: the number of optimizer steps taken when it was known.
- `train/loss` at s: the loss of the batch that drove update s (measured on the weights after s - 1
  steps, as training computes it), every `trainer.log_every_n_steps` steps (s = n, 2n, ...) and for
  the last update of the fit: the curve ends at the final step, and has no point before training.
- `val/*` and `val_chance/*` at s: the validation of the weights after s steps (never at step 0).
- `test/*`, `val_target/*` and `weights/*`: once, at the final step.

TensorBoard's first screen (docs/tensorboard.md): Time Series sorts card groups by name and opens
the first two, so the run's own folder holds the `train` and `val` curves and nothing that sorts
before them. The chance levels and the test result are two more runs beside it, `<tb>/chance` and
`<tb>/test`, under the validation curves' tags: each `val/*` card shows the curve, its chance level
as a flat line of its own colour, and the test result as the point at the end (`train/loss` gets
the loss's chance level). `val_target/*` (steps, steps to target) and `weights/*` (what the trained
network holds: memory capacity, timescales) sort after `val`. HParams names them as a reader does
(`test/exact`, `chance/exact`, `steps to target`), and the Text tab's `result/summary` is the
terminal's table. W&B and MLflow keep the flat names (`test/exact`, `val_chance/exact`).

wandb and mlflow are imported only when their logger is built (`logger=wandb`, `logger=mlflow`):
Lightning's logger classes import neither at module level, and a default run stays as fast.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger as _MLFlowLogger
from pytorch_lightning.loggers import TensorBoardLogger as _TensorBoardLogger
from pytorch_lightning.loggers import WandbLogger as _WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from src.terminal import sample_ok

CHANCE = "val_chance"  # key prefix of the chance levels (memoryless baselines) the module logs
TARGET = "val_target"  # tag group of the end-of-run numbers (steps, steps and seconds to target)
WEIGHTS = "weights"  # tag group of what the trained network holds (src/diagnostics.py)
# TensorBoard runs beside a run's own, under the validation curves' tags (module docstring)
CHANCE_RUN, TEST_RUN = "chance", "test"
# the HParams columns shown first (the UI shows five): what was trained, after the overrides
FIRST_HPARAMS = ("task.name", "model.cell", "model.topology", "model.hidden")

# HParams columns every run has: what people sweep. Named by config key, as typed in an override.
HPARAM_KEYS = (
    "task.name",
    "model.cell",
    "model.hidden",
    "model.layers",
    "model.topology",
    "task.lag",
    "task.context",
    "task.out_len",
    "task.vocab",
    "task.encoding",
    "optim.optimizer.lr",
    "data.batch_size",
    "model.tbptt",
    "seed",
)
# overrides that choose where and how a run is recorded, not what it trains
NOT_HPARAMS = ("hydra", "paths", "logger", "hardware", "callbacks", "debug", "ckpt_path", "samples", "progress")


def _drop_epoch(metrics: dict[str, float]) -> dict[str, float]:
    # Lightning adds `epoch` to every log_metrics call; with one long virtual epoch it is a flat
    # card that sorts first in TensorBoard and says nothing.
    return {k: v for k, v in metrics.items() if k != "epoch"}


class TensorBoardLogger(_TensorBoardLogger):
    """Lightning's TensorBoardLogger without the `epoch` scalar, with the chance levels and the test
    result in runs of their own (`tensorboard_places`), and without hyperparameters in the event
    file at fit start: `record_run` writes the HParams data once the run has finished."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Every run starts a TensorBoard session (SessionLog.START, written for a purge_step): the
        # Python loader treats a run's first START as its start and purges only from the second
        # on, so the fresh run writes one at step 0 (which purges nothing) and a resume's counts.
        kwargs.setdefault("purge_step", 0)
        super().__init__(*args, **kwargs)
        self._runs: dict[str, Any] = {}  # the chance and test runs' writers, made on first use

    @rank_zero_only  # as Lightning's: under DDP only rank 0 writes (the others' experiment is a dummy)
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        own: dict[str, float] = {}
        for key, value in _drop_epoch(metrics).items():
            for run, tag in tensorboard_places(key):
                if run:
                    self._writer(run).add_scalar(tag, value, step)
                else:
                    own[tag] = value
        if own:
            super().log_metrics(own, step)

    def _writer(self, run: str) -> Any:
        if rank_zero_only.rank != 0:  # Lightning's no-op stand-in, as the run's own experiment is there
            return self.experiment
        if run not in self._runs:  # the same writer class and arguments (purge_step, flush_secs) as the run's own
            self._runs[run] = type(self.experiment)(os.path.join(self.log_dir, run), **self._kwargs)
        return self._runs[run]

    @rank_zero_only
    def finalize(self, status: str) -> None:
        # kept, not made anew: a closed writer reopens on its next point without a second session
        # start, which TensorBoard would read as a purge of the run's earlier points
        for writer in self._runs.values():
            writer.close()
        super().finalize(status)

    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        self.hparams.update(dict(params))  # hparams.yaml only

    def resume_at(self, step: int) -> None:
        """A resumed run logs again from its checkpoint's step: TensorBoard drops the killed
        process's points at steps >= step (SummaryWriter's purge_step), so no step is shown twice.
        The points at exactly that step (its validation, the loss of update `step`) were measured
        before the checkpoint and are not measured again, so they are written anew after the purge."""
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util.tensor_util import make_ndarray

        kept = {  # per run, the loader hands scalars over as 0-d tensors
            run: [
                (v.tag, float(make_ndarray(v.tensor)))
                for f in sorted(Path(self.log_dir, run).glob("events.*"))
                for ev in EventFileLoader(str(f)).Load()
                if ev.step == step
                for v in ev.summary.value
                if v.HasField("tensor") and not v.tensor.tensor_shape.dim
            ]
            for run in ("", CHANCE_RUN, TEST_RUN)
        }
        self._kwargs["purge_step"] = step
        for run, points in kept.items():
            writer = self._writer(run) if run else self.experiment
            for tag, value in dict(points).items():  # the latest point per tag
                writer.add_scalar(tag, value, step)


def tensorboard_places(key: str) -> list[tuple[str, str]]:
    """(run, tag) pairs where TensorBoard shows a logged key; run "" is the run's own folder.
    `val_chance/<k>` -> the chance run's `val/<k>` (and `train/loss` for the loss), `test/<k>` -> the
    test run's `val/<k>`; every other key as it is."""
    stage, _, name = key.partition("/")
    if stage == CHANCE:
        return [(CHANCE_RUN, f"val/{name}"), *([(CHANCE_RUN, "train/loss")] if name == "loss" else [])]
    if stage == "test":
        return [(TEST_RUN, f"val/{name}")]
    return [("", key)]


def wandb_logged_in() -> bool:
    """True when the user has logged in to W&B: WANDB_API_KEY set, or a netrc entry for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(_WandbLogger):
    """W&B, offline (files under the run folder, `wandb sync` uploads them later) unless the user
    has logged in; `offline: true/false` in conf/logger/wandb.yaml forces either."""

    def __init__(self, save_dir: str, offline: bool | None = None, name: str | None = None, **kwargs: Any) -> None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        offline = not wandb_logged_in() if offline is None else offline
        super().__init__(save_dir=save_dir, offline=offline, name=name or Path(save_dir).name, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(_drop_epoch(metrics), step)


class MLFlowLogger(_MLFlowLogger):
    """MLflow with a local file store under the run folder (`mlflow ui --backend-store-uri
    file:<run>/mlruns` shows it), unless `tracking_uri` names another store."""

    def __init__(self, save_dir: str, tracking_uri: str | None = None, run_name: str | None = None, **kwargs: Any):
        uri = tracking_uri or (Path(save_dir).resolve() / "mlruns").as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store in maintenance mode and refuses it unless asked: a run
            # folder's own store needs no server or database, which is the point here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().__init__(tracking_uri=uri, run_name=run_name or Path(save_dir).name, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(_drop_epoch(metrics), step)


def _plain(v: Any) -> int | float | str | bool:
    """A value every logger's hyperparameter store takes."""
    if v is None:
        return "null"
    return v if isinstance(v, (int, float, str, bool)) else str(v)


def chosen_hparams(cfg: DictConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """The HParams columns of a run: HPARAM_KEYS (model.tbptt for stateful tasks) plus every key the job's overrides set (in a
    multirun, the keys that vary), by config key; a config group chosen by override (`model=encdec`)
    under the group's name. task, cell and topology are the resolved ones (`topology: auto` -> `last`)."""
    # model.tbptt only acts on stateful tasks: elsewhere it would be a constant column taking one
    # of the five places the HParams table shows at first
    keys = [k for k in HPARAM_KEYS if k != "model.tbptt" or OmegaConf.select(cfg, "task.stateful")]
    out = {key: _plain(OmegaConf.select(cfg, key)) for key in keys}
    out.update({"task.name": metrics.get("task"), "model.cell": metrics.get("cell")})
    if metrics.get("topology"):
        out["model.topology"] = metrics["topology"]
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hc = HydraConfig.get()
        for override in hc.overrides.task:
            key, _, value = override.lstrip("+~").partition("=")
            if key.split(".")[0].split("@")[0] in NOT_HPARAMS:
                continue
            node = OmegaConf.select(cfg, key)
            if isinstance(node, ListConfig):  # tags=[a,b]
                out[key] = ",".join(map(str, node))
            elif isinstance(node, DictConfig) or node is None:  # a group choice, or a key it deletes
                out[key] = hc.runtime.choices.get(key, value)
            else:
                out[key] = node
    return {k: _plain(v) for k, v in out.items()}


def final_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """Chance levels, the target's outcome and what the trained network holds, as `val_chance/*`,
    `val_target/*` and `weights/*` scalars.
    Keys of metrics.json are read defensively: a missing one is left out."""
    out = {f"{CHANCE}/{k}": float(v) for k, v in (metrics.get("chance") or {}).items()}
    if isinstance(metrics.get("steps"), int):
        out[f"{TARGET}/steps"] = float(metrics["steps"])
    target = metrics.get("target") or {}
    if target.get("reached"):
        for key, name in (("step", "steps_to_target"), ("seconds", "seconds_to_target")):
            if isinstance(target.get(key), (int, float)):
                out[f"{TARGET}/{name}"] = float(target[key])
    if isinstance(target.get("first_hit_step"), (int, float)):
        out[f"{TARGET}/first_hit_step"] = float(target["first_hit_step"])
    diag = metrics.get("diagnostics") or {}
    if diag.get("memory"):  # src/diagnostics.py: what the trained network holds
        out[f"{WEIGHTS}/memory_capacity"] = float(diag["memory"]["capacity"])
    if diag.get("timescales"):
        out[f"{WEIGHTS}/timescale_median"] = float(diag["timescales"]["timescale_median"])
    return out


def diagnostics_markdown(metrics: dict[str, Any]) -> str | None:
    """Memory per delay (and gradient by distance) as a markdown table for the Text tab."""
    diag = metrics.get("diagnostics") or {}
    mem = diag.get("memory")
    if not mem:
        return None
    grads = diag.get("gradient_by_delay") or []
    top = max(grads) if grads else 0.0
    lines = [
        f"Linear readout of the input k steps back from the final state ({mem['kind']}; chance {mem['chance']:.3g}); "
        f"capacity {mem['capacity']:.2f}",
        "",
        "| k | recall | gradient / max |",
        "|---|---|---|",
    ]
    for k, score in zip(mem["delays"], mem["score"], strict=True):
        g = f"{grads[k] / top:.2g}" if top and k < len(grads) else "-"
        lines.append(f"| {k} | {'-' if score is None else f'{score:.3f}'} | {g} |")
    by_pos = diag.get("accuracy_by_position")
    if by_pos:
        lines += ["", "Test accuracy by target position", "", "| position | accuracy |", "|---|---|"]
        lines += [f"| {j} | {a:.3f} |" for j, a in enumerate(by_pos) if a is not None]
    return "\n".join(lines)


def samples_markdown(rows: list[dict[str, Any]]) -> str:
    """Sample predictions as a markdown table with an ok/ERR column (TensorBoard's Text tab renders it)."""
    lines = ["| | input | expected | predicted |", "|---|---|---|---|"]
    lines += [
        f"| {'ok' if sample_ok(r) else '**ERR**'} | {r['input']} | {r['expected']} | {r['predicted']} |" for r in rows
    ]
    return "\n".join(lines)


def custom_scalars_layout(metrics: dict[str, Any]) -> dict[str, dict[str, list]]:
    """TensorBoard Custom Scalars: each validation metric on one chart (the run's curve, the chance
    run's level and the test run's result share the tag), and train against validation loss."""
    names = [k.split("/", 1)[1] for k in metrics if k.startswith("val/")]
    return {
        "validation, chance and test": {f"val/{k}": ["Multiline", [f"^val/{k}$"]] for k in names},
        "loss": {"train/loss and val/loss": ["Multiline", ["^train/loss$", "^val/loss$"]]},
    }


def view_link(address: str = "http://localhost:6006/", pinned: tuple[str, ...] = ("val/exact", "val/loss")) -> str:
    """A TensorBoard address that opens Time Series unsmoothed with `pinned` on top: the two
    defaults a writer cannot set in the event files, set in the URL (TensorBoard reads `smoothing`
    and `pinnedCards` from it)."""
    import json
    from urllib.parse import urlencode

    cards = json.dumps([{"plugin": "scalars", "tag": t} for t in pinned], separators=(",", ":"))
    return f"{address}?{urlencode({'smoothing': 0, 'pinnedCards': cards})}#timeseries"


def result_markdown(metrics: dict[str, Any]) -> str:
    """The run's result as the terminal prints it (metric: test, last validation, chance), its
    steps to target, and how to read the curves: TensorBoard's Text tab renders it."""
    chance = metrics.get("chance") or {}
    names = [k.split("/", 1)[1] for k in metrics if k.startswith("test/")]
    lines = [
        f"**{metrics.get('task')}**, {metrics.get('cell')} ({metrics.get('topology')}), "
        f"{metrics.get('params')} parameters; tested: {metrics.get('tested_checkpoint')}",
        "",
        "| metric | test | val (last) | chance |",
        "|---|---|---|---|",
    ]
    for k in names:
        cells = [metrics.get(f"test/{k}"), metrics.get(f"val/{k}"), chance.get(k)]
        lines.append(f"| {k} | " + " | ".join("-" if v is None else f"{v:.4g}" for v in cells) + " |")
    target = metrics.get("target") or {}
    if target.get("monitor"):
        rule = f"{target['monitor']} {'>=' if target.get('mode') == 'max' else '<='} {target.get('target')}"
        reached = f"reached at step {target['step']}" if target.get("reached") else "not reached"
        lines += ["", f"Target {rule}: {reached}; trained {metrics.get('steps')} steps."]
    lines += [
        "",
        "Reading the curves: each `val/*` card holds the run (its own colour), `.../chance` (the memoryless "
        "baseline, a flat line) and `.../test` (the held-out test result, one point at the last step). "
        "TensorBoard smooths curves by 0.6 unless told otherwise, so a curve that reaches 1 shows less: "
        f"set Smoothing to 0 in the settings pane, or open [this address]({view_link()}) (port 6006; no "
        "smoothing, val/exact and val/loss pinned on top).",
    ]
    return "\n".join(lines)


def record_run(loggers: list[Any], cfg: DictConfig, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write the end-of-run record to every logger and finalize it: hyperparameters, final
    metrics (test/val, chance levels, steps and seconds to target), sample predictions."""
    if not loggers:
        return
    hparams = chosen_hparams(cfg, metrics)
    extra = final_numbers(metrics)
    # the module logs the chance levels at every validation; only a run that never validated needs them here
    logged = {k: v for k, v in extra.items() if not k.startswith(f"{CHANCE}/") or "val/loss" not in metrics}
    final = {k: v for k, v in metrics.items() if isinstance(v, float) and k.startswith(("train/", "val/", "test/"))}
    step = int(metrics.get("steps") or 0)
    table = samples_markdown(rows)
    for lg in loggers:
        if isinstance(lg, _TensorBoardLogger):
            _record_tensorboard(lg, hparams, logged, table, step, metrics)
        elif isinstance(lg, _WandbLogger):
            lg.experiment.config.update(hparams, allow_val_change=True)
            lg.experiment.summary.update({**final, **extra})
            lg.log_text(
                "samples/test",
                columns=["ok", "input", "expected", "predicted"],
                data=[
                    ["ok" if sample_ok(r) else "ERR", str(r["input"]), str(r["expected"]), str(r["predicted"])]
                    for r in rows
                ],
            )
            lg.finalize("success")
            lg.experiment.finish()  # flush the offline files now, not at interpreter exit
            continue
        else:  # MLflow, CSV: the curves (final metrics included) are logged already
            lg.log_hyperparams(hparams)
            lg.log_metrics(logged, step=step)
            if isinstance(lg, _MLFlowLogger):
                lg.experiment.log_text(lg.run_id, table, "samples/test.md")
        lg.finalize("success")


def _record_tensorboard(
    lg: _TensorBoardLogger, hparams: dict[str, Any], extra: dict[str, float], table: str, step: int, metrics: dict
) -> None:
    """HParams plugin data without metric values of its own: the plugin reads each metric as the
    last point of the run's scalar tag of that name (val/exact: the last validation), so nothing is
    written at another step under a curve's tag. The experiment summary names the columns and
    orders them (the UI shows the first five hyperparameters: the overridden ones first)."""
    from pytorch_lightning.core.saving import save_hparams_to_yaml
    from tensorboard.plugins.text.summary_v2 import text_pb
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    writer = lg.experiment
    lg.log_metrics(extra, step)
    shown = {k: str(v).lower() if isinstance(v, bool) else v for k, v in hparams.items()}
    _, session_start, session_end = hparams_summaries(shown, {})
    writer._get_file_writer().add_summary(experiment_summary(shown, metrics, extra))
    writer._get_file_writer().add_summary(session_start)
    writer._get_file_writer().add_summary(session_end)
    writer.add_custom_scalars(custom_scalars_layout(metrics))
    # tensorboard's own text summary: torch's add_text would name the card samples/test/text_summary
    writer._get_file_writer().add_summary(text_pb("result/summary", result_markdown(metrics)), step)
    writer._get_file_writer().add_summary(text_pb("samples/test", table), step)
    memory = diagnostics_markdown(metrics)
    if memory:
        writer._get_file_writer().add_summary(text_pb(f"{WEIGHTS}/memory", memory), step)
    lg.hparams = dict(hparams)
    Path(lg.log_dir).mkdir(parents=True, exist_ok=True)
    save_hparams_to_yaml(os.path.join(lg.log_dir, lg.NAME_HPARAMS_FILE), lg.hparams)


def experiment_summary(hparams: dict[str, Any], metrics: dict[str, Any], extra: dict[str, float]) -> Any:
    """The HParams experiment: hyperparameters with what was trained and the job's overrides first
    (in a sweep, what varies), without domains (every job of a sweep writes the same
    one and TensorBoard reads the first, so no job may narrow the values to its own); metrics named
    as a reader says them, the test result first."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    # The plugin sorts the columns `differs` first, by name, and the UI shows five: marked so are
    # what was trained and the job's overrides (in a sweep, what varies), not what stayed at its default.
    first = {k for k in hparams if k not in HPARAM_KEYS} | {k for k in FIRST_HPARAMS if k in hparams}
    types = {bool: "DATA_TYPE_BOOL", str: "DATA_TYPE_STRING"}
    infos = [
        api_pb2.HParamInfo(
            name=k, type=api_pb2.DataType.Value(types.get(type(v), "DATA_TYPE_FLOAT64")), differs=k in first
        )
        for k, v in hparams.items()
    ]
    first_metrics = ("exact", "acc", "loss")  # the result, then what explains it
    names = sorted(
        (k.split("/", 1)[1] for k in metrics if k.startswith("test/")),
        key=lambda k: (first_metrics.index(k) if k in first_metrics else len(first_metrics), k),
    )
    columns = [(TEST_RUN, f"val/{k}", f"test/{k}") for k in names]
    if (metrics.get("target") or {}).get("monitor"):  # every job has the column, reached or not
        columns.append(("", f"{TARGET}/steps_to_target", "steps to target"))
    columns += [("", f"val/{k}", f"val/{k}") for k in names if f"val/{k}" in metrics]
    columns += [(CHANCE_RUN, f"val/{k}", f"chance/{k}") for k in names if k in (metrics.get("chance") or {})]
    columns += [("", "train/loss", "train/loss")] * ("train/loss" in metrics)
    columns += [("", tag, tag.split("/", 1)[1].replace("_", " ")) for tag in extra if tag.startswith(WEIGHTS)]
    columns.append(("", f"{TARGET}/steps", "steps"))
    metric_infos = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(group=group, tag=tag), display_name=display)
        for group, tag, display in columns
    ]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos)
    content = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=metadata.PLUGIN_DATA_VERSION)
    return Summary(
        value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=metadata.create_summary_metadata(content))]
    )
