"""optim.grad_clip_value clips each gradient element (Arjovsky et al. 2016's copy setting), in a real
Lightning training step: the applied update is the clipped gradient, not the raw one."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from src.datamodules.tasks import make_task
from src.lit_models.optim_config import Optim
from src.lit_models.sequence_module import SequenceModule
from src.schema import ConfigError, check

TASK = {"name": "copy_memory", "family": "copy_memory", "delay": 2, "symbols": 2, "categories": 4}


class Net(nn.Module):
    """A per-step readout whose gradients are large (x 50): most elements exceed a bound of 0.01."""

    def __init__(self, vocab: int, n_out: int):
        super().__init__()
        self.emb, self.out = nn.Embedding(vocab, 8), nn.Linear(8, n_out)

    def forward(self, x, state=None):
        return 50 * self.out(self.emb(x)), state


def one_step(clip_value: float | None) -> tuple[dict, dict, dict]:
    """Parameters before and after one SGD(lr=1) step of train.py's module, and the raw gradient."""
    task = make_task(TASK)
    torch.manual_seed(0)
    x = torch.randint(0, task.vocab, (4, task.context))
    y, mask = task.targets(x)
    net = Net(task.vocab, task.n_classes)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    module = SequenceModule(
        net, task, optimizer=lambda p: torch.optim.SGD(p, lr=1.0), grad_clip=None, grad_clip_value=clip_value
    )
    out, _ = net(x)
    module.loss(out, y, mask).backward()
    grad = {k: v.grad.detach().clone() for k, v in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([(x, y, mask, True)], collate_fn=lambda b: b[0]))
    after = {k: v.detach() for k, v in net.named_parameters()}
    return before, after, grad


@pytest.mark.parametrize("bound", [0.01])
def test_each_gradient_element_is_clipped_in_a_real_step(bound):
    before, after, grad = one_step(bound)
    assert max(g.abs().max().item() for g in grad.values()) > 10 * bound  # the bound is really exceeded
    for k in grad:
        torch.testing.assert_close(before[k] - after[k], grad[k].clamp(-bound, bound))


def test_without_the_option_the_raw_gradient_is_applied():
    before, after, grad = one_step(None)
    for k in grad:
        torch.testing.assert_close(before[k] - after[k], grad[k])
    assert any(not torch.allclose(grad[k], grad[k].clamp(-0.01, 0.01)) for k in grad)


def test_the_bound_must_be_positive():
    node = {"optimizer": {"_target_": "torch.optim.RMSprop"}, "scheduler": None, "grad_clip": None}
    assert check(Optim, "optim", {**node, "grad_clip_value": 1.0}).grad_clip_value == 1.0
    with pytest.raises(ConfigError, match=r"^optim.grad_clip_value=0 is not allowed; use null or a number > 0.$"):
        check(Optim, "optim", {**node, "grad_clip_value": 0})
