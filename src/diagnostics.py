"""What a trained network holds: linear memory-capacity probes of its hidden states.

`memory_capacity(states, inputs, max_delay)` freezes nothing itself: give it the hidden states a
network produced on fresh input sequences and the inputs, and it fits, for every delay k = 0..K, a
ridge-regression readout from the state at step t to the input at step t - k, on one half of the
sequences, and scores it on the other half:

- scalar inputs: the squared correlation r2_k between readout and input; their sum over k is
  Jaeger's (2001) memory capacity MC = sum_k r2_k. For a linear network h_t = A h_{t-1} + b x_t with
  i.i.d. input, r2_k = 1 exactly while x_{t-k} is a linear function of the state, so MC is the rank
  of the controllability matrix [b, Ab, A^2 b, ...], at most the state size.
- integer inputs (a vocabulary of V symbols): a one-hot readout per symbol, scored by accuracy;
  the capacity is the chance-corrected sum sum_k (acc_k - 1/V) / (1 - 1/V), so a state that holds
  the last n symbols exactly scores n, one that holds nothing scores about 0.

The probe is linear on purpose: it measures what a linear readout (what the trained network's own
output layer is) can recover, not what an arbitrary decoder could.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """W minimising ||[x, 1] W - y||^2 + alpha ||W||^2 (bias not penalised), in float64."""
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    reg = alpha * torch.eye(x1.shape[1], dtype=x.dtype)
    reg[-1, -1] = 0.0
    return torch.linalg.solve(x1.T @ x1 + reg, x1.T @ y)


def _apply(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1) @ w


def memory_capacity(
    states: torch.Tensor,
    inputs: torch.Tensor,
    max_delay: int,
    vocab: int | None = None,
    alpha: float = 1e-6,
    burn_in: int | None = None,
) -> dict[str, Any]:
    """Per-delay recall of the input from the state.

    states (batch, time, hidden); inputs (batch, time): integers in [0, vocab) when `vocab` is
    given, else real values. Steps t < burn_in (default max_delay) are skipped, so every delay is
    scored on the same steps. Returns {"delays", "score" (r2 or accuracy per delay), "capacity",
    "kind" ("r2" or "accuracy"), "chance" (0 or 1/vocab)}. A delay whose input is the same in every
    scored step (copy_memory's blanks and delimiter at fixed places) is None and left out of the
    capacity: any readout "recalls" a constant, which says nothing about memory.
    """
    b, t, _ = states.shape
    burn = max_delay if burn_in is None else burn_in
    if t <= burn:
        raise ValueError(f"sequences of {t} steps leave nothing to score after a burn-in of {burn} steps.")
    if b < 2:
        raise ValueError("memory_capacity needs at least 2 sequences (one half fits, the other scores).")
    s = states.detach().double().cpu()
    u = inputs.detach().cpu()
    fit, held = slice(0, b // 2), slice(b // 2, b)
    # The states read are the same for every delay (steps burn..t-1), only the targets move: one
    # ridge system with the targets of all delays as columns (each column's solution is its own).
    x_fit, x_held = (s[part, burn:].reshape(-1, s.shape[-1]) for part in (fit, held))
    targets = [u[:, burn - k : t - k] for k in range(max_delay + 1)]
    varies = [bool((tg != tg.reshape(-1)[0]).any()) for tg in targets]
    if vocab is None:
        y_fit = torch.stack([tg[fit].reshape(-1).double() for tg in targets], dim=1)
        pred = _apply(ridge_fit(x_fit, y_fit, alpha), x_held)
        scores = []
        for k, tg in enumerate(targets):
            r = torch.corrcoef(torch.stack([pred[:, k], tg[held].reshape(-1).double()]))[0, 1]
            scores.append(float(r**2) if torch.isfinite(r) else 0.0)
    else:
        y_fit = torch.cat(
            [torch.nn.functional.one_hot(tg[fit].reshape(-1).long(), vocab).double() for tg in targets], 1
        )
        pred = _apply(ridge_fit(x_fit, y_fit, alpha), x_held).reshape(len(x_held), len(targets), vocab).argmax(-1)
        scores = [float((pred[:, k] == tg[held].reshape(-1)).double().mean()) for k, tg in enumerate(targets)]
    scores = [a if v else None for a, v in zip(scores, varies, strict=True)]
    if vocab is None:
        capacity, chance = sum(a for a in scores if a is not None), 0.0
    else:
        chance = 1.0 / vocab
        capacity = sum((a - chance) / (1 - chance) for a in scores if a is not None)
    return {
        "delays": list(range(max_delay + 1)),
        "score": scores,
        "capacity": capacity,
        "kind": "r2" if vocab is None else "accuracy",
        "chance": chance,
    }


def encoder_states(net: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The first (encoder) cell's output at every step, (batch, time, hidden), for a network built by
    src/models (input encoder -> topology whose first cell is `rnn`); None for a topology that does
    not read the window step by step (one_to_one)."""
    rnn = _stepwise_rnn(net)
    if rnn is None:
        return None
    with torch.no_grad():
        return rnn(net.encoder(x), None)[0]


def _stepwise_rnn(net: nn.Module) -> nn.Module | None:
    """The encoder cell of a network whose topology reads its window one step at a time."""
    from src.models.topologies import stepwise_encoder

    topology = getattr(net, "topology", None)
    return None if topology is None else stepwise_encoder(topology)


def window_memory(net: nn.Module, x: torch.Tensor, vocab: int | None, max_delay: int = 32) -> dict[str, Any] | None:
    """What the state after the last step of a window holds about each earlier input: a readout per
    delay k = 0 .. min(time - 1, max_delay), scored at the final step. None where it does not apply
    (a topology without a step-by-step encoder, inputs with several features per step)."""
    if x.dim() != 2:
        return None
    states = encoder_states(net, x)
    if states is None:
        return None
    k = min(x.shape[1] - 1, max_delay)
    return memory_capacity(states, x, max_delay=k, vocab=vocab, burn_in=x.shape[1] - 1)


def timescales(net: nn.Module, x: torch.Tensor) -> dict[str, Any] | None:
    """How long the first recurrent layer of the encoder keeps what it holds, per unit: its
    retention a (the share of the previous state kept per step, averaged over the data) and the
    timescale -1 / ln a in steps (e^-1 of a value left after that many steps).

    The cell says what its retention is (its `timescales(e) -> (kind, a)`, src/models/cells/): the
    LSTM's forget gate, the GRU's update gate, minGRU's 1 - z, the LRU's |lambda|, the Elman
    network's spectral radius (a bound, not a per-unit timescale); None for a cell without one.
    """
    rnn = _stepwise_rnn(net)
    if rnn is None or rnn.timescales is None:
        return None
    with torch.no_grad():
        kind, a = rnn.timescales(net.encoder(x))
    a = a.double().clamp(1e-12, 1 - 1e-12)
    tau = -1.0 / torch.log(a)
    q = torch.tensor([0.5, 0.9], dtype=torch.float64)
    ra, rt = torch.quantile(a, q).tolist(), torch.quantile(tau, q).tolist()
    return {"kind": kind, "units": len(a), "retention_median": ra[0], "retention_p90": ra[1],
            "timescale_median": rt[0], "timescale_p90": rt[1]}  # fmt: skip


def gradient_by_delay(
    net: nn.Module, x: torch.Tensor, loss_fn: Any, y: torch.Tensor, mask: torch.Tensor
) -> list[float]:
    """||dL/de_{T-1-k}||, the gradient of the loss with respect to the encoded input k steps before a
    window's last step, averaged over the windows, for k = 0 .. T-1: how far back the training
    signal reaches. `loss_fn(out, y, mask)` is the training loss."""
    e = net.encoder(x).detach().requires_grad_(True)
    out, _ = net.topology(e, None, net.out_len)
    (grad,) = torch.autograd.grad(loss_fn(out, y, mask), e)  # the weights' .grad stay untouched
    per_step = grad.norm(dim=-1).mean(dim=0)  # (time,)
    return per_step.flip(0).tolist()


def accuracy_by_position(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> list | None:
    """Test accuracy at each target position of a window with several targets (an echoed block,
    copy memory's recall, a label stream): where along the answer the network fails. None for one
    target per window or a real-valued target; a position no window scores is None."""
    if y.dim() != 2 or y.shape[1] < 2 or y.is_floating_point():
        return None
    with torch.no_grad():
        out, _ = net(x)
    if out.dim() != 3 or out.shape[1] != y.shape[1]:
        return None
    scored = mask.bool() if mask is not None else torch.ones_like(y, dtype=torch.bool)
    right = ((out.argmax(-1) == y) & scored).sum(0)
    count = scored.sum(0)
    return [float(r) / float(n) if n else None for r, n in zip(right.tolist(), count.tolist(), strict=True)]


PROBE_WINDOWS = 1024  # the memory probe: 512 to fit the readouts, 512 to score them
MEAN_WINDOWS = 256  # gate statistics and gradient norms: means over windows


def diagnose(net: nn.Module, task: Any, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, loss_fn: Any) -> dict:
    """Every diagnostic of a trained network on one set of windows (x, y, mask), JSON-ready; a
    part that does not apply to this network or task is None. Runs on the CPU copies of the set:
    once at the end of a run (train.py) or of an evaluation (eval.py), never per step."""
    was_training = net.training
    net.eval()
    x, y, mask = (t.detach().cpu() for t in (x, y, mask))
    device = next(net.parameters()).device
    net.cpu()
    try:
        symbols = task.alphabet if task.encoding in ("onehot", "embedding") and not x.is_floating_point() else None
        # Enough windows for each estimate, and a bounded cost (under 5% of a default run's fit,
        # benchmarks/bench.py --sections diagnostics): the probe fits on one half and scores on the
        # other; the gate means, gradient norms and accuracies by position are averages.
        few, half = slice(0, MEAN_WINDOWS), slice(0, PROBE_WINDOWS // 2)
        return {
            "memory": window_memory(net, x[:PROBE_WINDOWS], symbols),
            "timescales": timescales(net, x[few]),
            "gradient_by_delay": gradient_by_delay(net, x[few], loss_fn, y[few], mask[few]) if x.dim() == 2 else None,
            "accuracy_by_position": accuracy_by_position(net, x[half], y[half], mask[half]),
        }
    finally:
        net.to(device)
        net.train(was_training)
