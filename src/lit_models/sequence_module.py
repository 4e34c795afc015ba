"""LightningModule: loss, metrics, optimizer and the stateful/TBPTT training step.

Batches are (x, y, mask, reset) from `SequenceDataModule`: x (batch, time) integers, y (batch, K)
integer targets in original units, mask (batch, K) marks the targets that count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from src.datamodules.tasks import Task
from src.loggers import CHANCE

Metrics = dict[str, float]


def chance_levels(task: Task, y: torch.Tensor, mask: torch.Tensor) -> Metrics:
    """What a model that ignores its input scores, to read every metric against: each task states
    its own (src/datamodules/tasks/), some measured on the evaluation set (y, mask)."""
    return task.chance_on(y, mask)


def detach(state: Any) -> Any:
    """A recurrent state (a tensor or a tuple of them) cut from the graph that made it."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def float32_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Forward hook for a regression head: its output again in float32 (autocast off) where a
    mixed precision gave less (bf16's 8-bit mantissa rounds a value of 20 by up to 0.06, which
    turns exact answers into wrong ones); None (keep it) in float32 and float64."""
    if output.dtype in (torch.float32, torch.float64):
        return None
    weight, bias = module.weight.float(), None if module.bias is None else module.bias.float()
    with torch.autocast(output.device.type, enabled=False):
        out = F.linear(args[0].float(), weight, bias)
    return out


class SequenceModule(pl.LightningModule):
    """Trains a `RecurrentNet` on a task. Stateless tasks use automatic optimization; stateful
    tasks carry the recurrent state across consecutive batches (row i = stream i) and truncate
    gradients every `tbptt` steps with manual optimization."""

    def __init__(
        self,
        net: nn.Module,
        task: Task,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        grad_clip: float | None = None,
        grad_clip_value: float | None = None,
        tbptt: int = 1,
        log_interval: int = 50,
        chance: Metrics | None = None,
    ):
        super().__init__()
        self.net, self.task = net, task
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.grad_clip, self.tbptt, self.log_interval = grad_clip, tbptt, log_interval
        self.grad_clip_value = grad_clip_value
        self.chance = chance or {}
        self.regression = task.objective == "regression"
        self.automatic_optimization = not task.stateful
        if self.regression:  # values, not classes: bf16's 8-bit mantissa would round them
            heads = [m for name, m in net.named_modules() if name.split(".")[-1] == "head"]
            assert heads, "a regression network has a head"
            for head in heads:
                head.register_forward_hook(float32_output)
        names = ["loss", "acc", "exact"] + (["mse", "mae", "pred_mean"] if self.regression else [])
        self.val_metrics = nn.ModuleDict({n: MeanMetric() for n in names})
        self.test_metrics = nn.ModuleDict({n: MeanMetric() for n in names})
        # mean squared prediction, for the predictions' std (a collapse to the mean shows as std ~ 0)
        self.pred_sq = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")}) if self.regression else None
        self.state: Any = None  # recurrent state carried between stateful training batches
        self.eval_state: Any = None  # the same between evaluation batches (stateful windows)
        self.last_train: tuple[int, torch.Tensor] | None = None  # (step, loss) of the last update
        self.logged_train_step = -1  # the step of the last train/loss point sent to the loggers

    # -- model outputs -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.net(x, state)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # The streams make their batches on the training device (num_workers=0): Lightning's
        # generic walk over the batch then moves nothing but costs ~3% of a default step on CPU.
        if isinstance(batch, (tuple, list)) and all(
            not isinstance(t, torch.Tensor) or t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def loss(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """out (batch, K, n_out), y and mask (batch, K): mean over the targets that count (over
        every step for a task whose loss is defined so, e.g. copy_memory; its metrics keep the mask)."""
        if getattr(self.task, "loss_on_every_step", False):
            mask = torch.ones_like(mask)
        if self.regression:
            err = (out.squeeze(-1) - y / self.task.scale).pow(2) * mask
            return err.sum() / mask.sum().clamp(min=1)
        # sum / count rather than the mean: a chunk whose targets are all masked (the first steps of
        # a stateful sequence, t < lag) gives 0, not the NaN of a mean over nothing
        target = y.masked_fill(~mask, -100)
        err = F.cross_entropy(out.flatten(0, 1), target.flatten(), ignore_index=-100, reduction="sum")
        return err / mask.sum().clamp(min=1)

    def predict_values(self, out: torch.Tensor) -> torch.Tensor:
        """Predicted values in original units: the class (long) or the unscaled regression output."""
        if not self.regression:
            return out.argmax(-1)
        return out.squeeze(-1).to(torch.promote_types(out.dtype, torch.float32)) * self.task.scale  # >= float32

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor | None:
        x, y, mask, reset = batch
        if not self.automatic_optimization:
            return self._stateful_step(x, y, mask, reset, batch_idx)
        out, _ = self.net(x)
        loss = self.loss(out, y, mask)
        self._train_loss(loss)
        return loss

    def _train_loss(self, loss: torch.Tensor) -> None:
        """Call before the optimizer step `loss` drives: record it at the step that update makes
        (global_step + 1; see src/loggers.py for what steps mean), so the curve runs from step
        `log_interval` to the last step, beside the validations, with no point before training. It
        goes to the loggers directly every `log_interval` steps (logging every step costs more than
        the step), not through self.log, whose cached step value Lightning re-sends on its own
        schedule, one batch late."""
        step = self.global_step + 1
        self.last_train = (step, loss.detach())
        if self.log_interval > 0 and step % self.log_interval == 0 and self.loggers:
            value = loss.item()
            for lg in self.loggers:
                lg.log_metrics({"train/loss": value}, step=step)
            self.logged_train_step = step

    def _stateful_step(self, x, y, mask, reset: bool, batch_idx: int) -> None:
        # Lightning 2 dropped built-in TBPTT. Notes: split(k) gives chunks of k steps
        # (tensor_split(k) would give k chunks); clipping is ours under manual optimization;
        # global_step counts optimizer steps, so it advances ceil(chunk / tbptt) per batch.
        # Stateful windows: one update per batch, each window backpropagated whole from the
        # detached final state of the same row of the previous batch (Keras' stateful layer).
        opt = self.optimizers()
        if reset:
            self.state = None
        if self.task.framing == "window":
            pieces = [(x, y, mask)]
        else:
            pieces = zip(x.split(self.tbptt, 1), y.split(self.tbptt, 1), mask.split(self.tbptt, 1), strict=True)
        for xs, ys, ms in pieces:
            out, state = self.net(xs, self.state)
            loss = self.loss(out, ys, ms)
            self.state = detach(state)
            if not ms.any():  # nothing to learn from (steps t < lag): carry the state, skip the update
                continue
            self._train_loss(loss)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()  # clips in on_before_optimizer_step, after a 16-mixed scaler has unscaled
            if self.scheduler_factory is not None:  # manual optimization: Lightning steps no scheduler
                self.lr_schedulers().step()

    def on_train_epoch_end(self) -> None:
        # train/loss for metrics.json (callback_metrics): the last update's loss, not a logged one
        if self.last_train is not None:
            self.log("train/loss", self.last_train[1], logger=False)

    def on_train_end(self) -> None:
        # the curve ends at the last update, whatever the interval
        if self.last_train is not None and self.last_train[0] != self.logged_train_step and self.loggers:
            step, loss = self.last_train
            for lg in self.loggers:
                lg.log_metrics({"train/loss": loss.item()}, step=step)
            self.logged_train_step = step

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Manual optimization clips here: Lightning calls this hook inside opt.step(), after
        # 16-mixed's GradScaler has unscaled the gradients (a clip before opt.step() would act on
        # the scaled ones, and the unscaled update would be the clip / scale, ~1e-5)
        if not self.automatic_optimization:
            self.configure_gradient_clipping(optimizer)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # ours, not the Trainer's (optim.*): elementwise first, as Arjovsky et al. clip, then the norm
        if self.grad_clip_value:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip_value, gradient_clip_algorithm="value")
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "step"}}

    # -- evaluation ----------------------------------------------------------------------------
    def _eval_step(self, batch: tuple, stage: str, metrics: nn.ModuleDict) -> None:
        x, y, mask, reset = batch
        # stateful windows: row i continues from row i of the previous batch until a reset, as in
        # training; a state of its own, so the training streams' state is left as it was
        out, state = self.net(x, None if reset else self.eval_state)
        self.eval_state = state if self.task.stateful_windows else None
        pred = self.predict_values(out)
        correct = (pred.round() if self.regression else pred) == y
        weight = mask.float()
        metrics["loss"].update(self.loss(out, y, mask), weight.sum())
        metrics["acc"].update(correct.float(), weight)
        # over the samples with a target (a pad_start window may have none)
        metrics["exact"].update((correct | ~mask).all(dim=1).float(), mask.any(dim=1).float())
        if self.regression:
            metrics["mse"].update(((pred - y) / self.task.scale).pow(2), weight)
            metrics["mae"].update((pred - y).abs(), weight)
            metrics["pred_mean"].update(pred, weight)
            self.pred_sq[stage].update(pred.pow(2), weight)
        self.log_dict({f"{stage}/{k}": m for k, m in metrics.items()}, on_step=False, on_epoch=True, logger=False)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics)

    def _log_pred_std(self, stage: str, metrics: nn.ModuleDict) -> None:
        if self.regression and self.pred_sq[stage].update_count:
            var = self.pred_sq[stage].compute() - metrics["pred_mean"].compute().pow(2)
            self.log(f"{stage}/pred_std", var.clamp(min=0).sqrt(), logger=False)
            self.pred_sq[stage].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_pred_std("val", self.val_metrics)
        if self.chance:  # reference lines beside the curves; src/loggers.py names the group
            self.log_dict({f"{CHANCE}/{k}": float(v) for k, v in self.chance.items()}, logger=False)

    def on_test_epoch_end(self) -> None:
        self._log_pred_std("test", self.test_metrics)

    def _send(self, *prefixes: str) -> None:
        """Evaluation metrics (self.log'ged with logger=False, for callbacks and metrics.json) to the
        loggers at the optimizer steps the weights have taken: Lightning would log them at one step
        less, and count batches, not updates. A logged `step` key would move them too, but Lightning
        then also names checkpoints by it."""
        if self.loggers and not self.trainer.sanity_checking:
            values = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(prefixes)}
            for lg in self.loggers:
                lg.log_metrics(values, step=self.global_step)

    def on_validation_end(self) -> None:
        self._send("val/", f"{CHANCE}/")

    def on_test_end(self) -> None:
        self._send("test/")
