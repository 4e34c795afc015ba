"""Reliability inside a fit: stop on a non-finite loss, stop cleanly on Ctrl-C, write checkpoints
atomically, and record what each rank trained on.

Used by `src.run.train`; the process-level half (resume, DDP relaunch, run folders) is in
`src.launch`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from src import signals
from src.checkpoints import RUN_KEY, checksum, listed_digests, load, sums_path, verify_checksum
from src.files import write_json
from src.launch import RunFailed, RunInterrupted
from src.schema import ConfigError


class NonFiniteLoss(RunFailed):
    """The training loss became NaN or inf; raised before the optimizer step that would spread it."""


class StopRequested(BaseException):
    """Internal: unwinds Lightning's fit loop after the interrupt checkpoint is written. A
    BaseException, so no `except Exception` in between swallows it."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint and its `<path>.sha256` so that a kill at any point leaves a pair that
    matches; checked on load (`src.checkpoints.verify_checksum`).

    Lightning 2.6 stages a checkpoint in the system temp folder and moves it into place; across
    filesystems that move is a copy into the open target, so a kill or a full disk during the copy
    truncates last.ckpt and the previous good one is lost. A rename within one folder is atomic:
    the target is either the old checkpoint or the new one. The checksum file names the digests the
    target may have: while the target is replaced it lists both the new file's and the old one's
    (WRITE_STEPS, in order):

    - `data`: `<path>.tmp` written and synced; target and checksum untouched (the old pair).
    - `sums_pending`: the checksum lists the new digest and the old one; target still the old file.
    - `renamed`: the target is the new file, which the pending checksum lists.
    - `sums_final`: the checksum lists the new digest only.

    Before, the checksum was written after the rename: a kill in between left a good last.ckpt that
    every resume refused as damaged. The checksum catches what a rename cannot: a file damaged
    later (garbage, truncation) or another file put in its place.
    """

    WRITE_STEPS = ("data", "sums_pending", "renamed", "sums_final")

    def _written(self, step: str, path: Path) -> None:
        """Called after each of WRITE_STEPS (tests place a kill here); nothing to do otherwise."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            self._written("data", path)
            digest = checksum(tmp)
            # every digest the target may have now (two, after a kill between the steps before)
            old = [d for d in listed_digests(path) if d != digest] if path.exists() else []
            _replace_text(sums_path(path), "".join(f"{d}  {path.name}\n" for d in [digest, *old]))
            self._written("sums_pending", path)
            os.replace(tmp, path)
            _sync_folder(path.parent)
            self._written("renamed", path)
            _replace_text(sums_path(path), f"{digest}  {path.name}\n")
            self._written("sums_final", path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)  # free the space a partial file holds
            # torch.save reports a failed write as a RuntimeError with the OSError as its context
            os_err = err if isinstance(err, OSError) else err.__cause__ or err.__context__
            if not isinstance(os_err, OSError):
                raise
            # write() errors carry no file name; name the checkpoint so the message can
            raise OSError(os_err.errno, os_err.strerror, str(path)) from err

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            verify_checksum(Path(path))
        except ConfigError as err:
            raise RunFailed(str(err)) from err
        return super().load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        sums_path(Path(path)).unlink(missing_ok=True)


def _replace_text(path: Path, text: str) -> None:
    """Write a small file atomically (temporary file, sync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """A rename survives a power cut once its folder is synced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def good(path: Path) -> bool:
    """A checkpoint that matches its checksum and holds finite weights only."""
    try:
        verify_checksum(path)
        state = load(path)["state_dict"]
    except Exception:
        return False
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


class RunGuard(pl.Callback):
    """Always attached by `train`.

    - Non-finite loss: checked before backward, so the weights stay finite and no checkpoint saves
      the broken state; the run stops with `NonFiniteLoss` and the last checkpoint stays good.
    - SIGINT / SIGTERM (flagged by `src.signals`, which owns them): the current batch finishes,
      `last.ckpt` is written at that batch boundary (the same point a step checkpoint is taken, so
      resuming it is exact), and the fit stops with `RunInterrupted`.
    - Under DDP both flags are summed over the ranks once per step, so every rank stops at the same
      batch (a rank that stopped alone would leave the others waiting in a collective).
    - RNG: every training batch starts from the RNG state the previous batch ended with, and that
      state rides in the checkpoint; so what draws between batches (a DataLoader iterator drawing
      its seed at an epoch's start, or a resume's first one; a validation) never reaches dropout, and
      a resumed run draws the masks the uninterrupted one drew.
    - The checkpoint records which run it belongs to (`identity`: src.checkpoints.run_identity)
      and the fit's last validation (metrics and step), so a resume whose fit has nothing left to
      train reports the same val/* and train/loss as the run it continues.
    """

    def __init__(self, ckpt_dir: str | Path, identity: dict[str, Any] | None = None, start_step: int = 0):
        self.ckpt_dir = Path(ckpt_dir)
        self.identity = identity
        self.start_step = start_step  # a resume's checkpoint step: where a stop before training is
        self._stop = False
        self._state: list[torch.Tensor] | None = None  # recurrent state restored from a checkpoint
        self._state_tuple = False
        self._rng: dict[str, Any] | None = None  # the RNG state the last training batch ended with
        self.val_step: int | None = None  # global step of the fit's last validation
        self._val: dict[str, float] = {}  # val/* and train/* of the fit, as of the last checkpoint restored

    def fit_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        """val/* and train/* at the end of the fit: the ones logged in this process, over those
        the resumed checkpoint recorded (a resume at the end of the budget logs none)."""
        now = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        return {**self._val, **now}

    # -- per step --------------------------------------------------------------------------------
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        # One host sync per step: the price of never stepping on (or checkpointing) NaN weights.
        # A single process reads one flag; ranks agree on both flags so they stop at one batch.
        if trainer.world_size == 1:
            bad, stop = not bool(torch.isfinite(loss.detach())), signals.received() is not None
        else:
            flags = torch.stack(
                [(~torch.isfinite(loss.detach())).float(), loss.new_tensor(signals.received() is not None)]
            )
            bad, stop = trainer.strategy.reduce(flags, reduce_op="sum").tolist()
        if bad:
            last = self.ckpt_dir / "last.ckpt"
            keep = f"the last good checkpoint is {last}" if good(last) else "no good checkpoint was saved before it"
            raise NonFiniteLoss(
                f"train/loss became {float(loss.detach()):.4g} at step {trainer.global_step} (batch "
                f"{trainer.fit_loop.epoch_loop.batch_progress.total.ready - 1}); the run stopped before the "
                f"optimizer step, {keep}; lower optim.optimizer.lr or set optim.grad_clip."
            )
        self._stop = self._stop or bool(stop)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self._rng is not None:
            _set_rng(self._rng)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        # Runs before ModelCheckpoint (Lightning orders checkpoint callbacks last): the batch is
        # complete, so this is the same resume point as a step checkpoint.
        self._rng = _get_rng()
        # under trainer.accumulate_grad_batches a batch that only accumulated is no resume point: its
        # gradient is in no checkpoint; stop after the batch that steps
        if not self._stop or trainer.fit_loop.epoch_loop._should_accumulate():
            return
        trainer.save_checkpoint(self.ckpt_dir / "last.ckpt")
        raise StopRequested

    # -- checkpoint state ------------------------------------------------------------------------
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Stateful tasks carry the recurrent state across batches; a resume inside a sequence needs
        # it. Every rank carries its own streams, so all ranks' states are gathered (this hook
        # runs on every rank; only rank 0 writes the file).
        if self.identity is not None:
            checkpoint[RUN_KEY] = self.identity
        if trainer.state.fn == "fit":
            checkpoint["fit_record"] = {"val_step": self.val_step, "metrics": self.fit_metrics(trainer)}
        state = getattr(pl_module, "state", None)
        if state is None:
            return
        parts = state if isinstance(state, tuple) else (state,)
        if trainer.world_size > 1:
            parts = tuple(trainer.strategy.all_gather(p) for p in parts)  # (world, ...)
        else:
            parts = tuple(p.unsqueeze(0) for p in parts)
        checkpoint["recurrent_state"] = {"tuple": isinstance(state, tuple), "parts": [p.cpu() for p in parts]}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != "fit":  # testing best.ckpt: the fit's record stays the fit's
            return
        record = checkpoint.get("fit_record") or {}
        self.val_step, self._val = record.get("val_step"), dict(record.get("metrics") or {})
        saved = checkpoint.get("recurrent_state")
        if saved is None or saved["parts"][0].shape[0] != trainer.world_size:
            return  # none carried, or another world size: the streams differ anyway
        self._state = [p[trainer.global_rank] for p in saved["parts"]]
        self._state_tuple = saved["tuple"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._state is not None:  # now the module is on its device
            parts = tuple(p.to(pl_module.device) for p in self._state)
            pl_module.state = parts if self._state_tuple else parts[0]
            self._state = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.val_step = trainer.global_step

    def state_dict(self) -> dict[str, Any]:
        return self._rng if self._rng is not None else _get_rng()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Set at the next training batch's start, after Lightning has made the DataLoader iterator
        # (which draws its seed from this RNG); setting it here shifted every later dropout mask.
        self._rng = dict(state)


def _get_rng() -> dict[str, Any]:
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def stop_report(err: BaseException, trainer: pl.Trainer, guard: RunGuard, out_dir: Path) -> BaseException:
    """Turn what ended a fit, test or the end-of-run writing into the exception `train` raises,
    and record it in metrics.json (rank 0), so a stopped run's folder says why it stopped. Unknown
    errors pass through (`src.run.record_failure` records them)."""
    last = guard.ckpt_dir / "last.ckpt"
    step = max(trainer.global_step, guard.start_step)  # a resume stopped before its checkpoint was restored
    record: dict[str, Any] = {"step": step, "checkpoint": str(last) if last.exists() else None}
    if isinstance(err, StopRequested | signals.SignalStop):
        signum = signals.received() or getattr(err, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        where = "no checkpoint was saved; start the run again"
        if last.exists():
            where = f"checkpoint {last}; continue with: python train.py ckpt_path={last}"
        result: BaseException = RunInterrupted(f"{name} at step {step}; {where}", signum=signum)
        record = {"status": "interrupted", "signal": name, **record}
    elif isinstance(err, RunFailed):
        result, record = err, {"status": "failed", "error": str(err), **record}
    elif isinstance(err, OSError):
        where = err.filename or out_dir
        result = RunFailed(
            f"writing {where} failed: {err.strerror or err} (errno {err.errno}); free space or point "
            f"paths.output_dir at a writable disk; the last complete checkpoint is {last if last.exists() else 'none'}."
        )
        record = {"status": "failed", "error": str(result), **record}
    else:
        return err
    if trainer.is_global_zero:
        try:
            write_json(out_dir / "metrics.json", record)
        except OSError:  # the disk may be the problem; the message on stderr still says it
            pass
    return result


class BatchLog(pl.Callback):
    """Debug aid: one line per training batch in `<run>/batches/rank<r>.jsonl`: the global index k
    of the batch in this rank's stream, the step, and a hash of x. Add it with
    `+callbacks.batch_log._target_=src.reliability.BatchLog`; appends across resumes, flushed per
    line so a killed run keeps what it trained on."""

    def __init__(self) -> None:
        self._file: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        path = Path(trainer.default_root_dir) / "batches" / f"rank{trainer.global_rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")  # noqa: SIM115 - kept open for the whole fit

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        x = batch[0].detach().cpu().contiguous().numpy()
        k = trainer.fit_loop.epoch_loop.batch_progress.total.ready - 1
        line = {"k": k, "step": trainer.global_step, "x": hashlib.sha1(x.tobytes()).hexdigest()[:16]}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
