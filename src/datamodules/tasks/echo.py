"""Echo: a uniform stream of integers in [0, vocab), and targets read back from it.

window framing: x (batch, context) -> y (batch, out_len), f of the target block ending `lag` steps
before the newest observation (echo_current, echo_lag, echo_sequence, partial_echo).
label framing: x (batch, T) -> y (batch, T), y_t = f(x_{t-lag}) with steps t < lag masked
(lag_regression, invert_bits), optionally stateful: consecutive batches continue the same streams
(echo_lag_online). f is `identity` or `invert` ((vocab - 1) - x, 1 - x for bits).

The rules are those of every stream task: `progression` (the arithmetic stream) shares them, and
the stream, not the family name, decides the class (a saved config without `family` still loads).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from src.config import ConfigError, Task, _choice, _float, _int, check_known_keys
from src.datamodules.tasks import family

STREAMS = ("uniform", "arithmetic")
FRAMINGS = ("window", "label")
TRANSFORMS = ("identity", "invert", "next")
ENCODINGS = ("onehot", "embedding", "scalar")
OBJECTIVES = ("classification", "regression")


@dataclass(frozen=True)
class Echo(Task):
    """The uniform stream's task; its fields are those of `Task` (src/config.py)."""

    @classmethod
    def from_config(cls, g: dict[str, Any], tbptt: int = 1) -> Task:
        """Validate a stream task's `task` node; `tbptt` fills a null `task.chunk`."""
        g = {k: v for k, v in g.items() if k != "family"}
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
        pad_start = g.get("pad_start", False)
        if not isinstance(pad_start, bool):
            raise ConfigError(f"task.pad_start={pad_start!r} is not allowed; it must be true or false.")
        if pad_start and (framing != "window" or stream != "uniform"):
            why = (
                "label framing already reads every step from the start of a sequence (targets before it masked)"
                if framing != "window"
                else "a progression window is a fresh run of values, not a cut from one sequence with a start to pad"
            )
            raise ConfigError(
                f"task.pad_start=true is not allowed with task.framing={framing!r} and task.stream={stream!r}: {why}; "
                "use framing=window with stream=uniform, or pad_start=false."
            )
        if pad_start and stateful:
            raise ConfigError(
                "task.pad_start=true is not allowed with task.stateful=true: Keras' stateful windows (the tutorials' "
                "layout) start each sequence at its first whole window; use one of the two."
            )
        tbptt = _int("model.tbptt", tbptt)  # checked here first: it fills a null task.chunk below
        outside = g.get("target_outside_window", False)
        if not isinstance(outside, bool):
            raise ConfigError(f"task.target_outside_window={outside!r} is not allowed; it must be true or false.")
        if stateful and framing == "window" and tbptt > 1:
            raise ConfigError(
                f"model.tbptt={tbptt} does not apply to stateful windows (task.framing=window): each window is "
                "backpropagated whole and the carried state is detached between batches, as in Keras; use tbptt=1."
            )
        if stateful and stream == "arithmetic":
            raise ConfigError(
                "task.stateful=true is not allowed with task.stream=arithmetic: its windows are independent "
                "progressions, not consecutive windows of one sequence; use stateful=false."
            )
        if outside and not (framing == "window" and lag + out_len > context):
            raise ConfigError(
                f"task.target_outside_window=true has no effect here (task.framing={framing!r}, lag + out_len = "
                f"{lag + out_len}, context={context}): it only admits window targets with lag + out_len > context; "
                "remove it."
            )
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
        kind = family("progression") if stream == "arithmetic" else Echo
        kind.check_stream(transform, encoding, objective, framing)

        if framing == "window":
            if transform == "next" and (lag != 0 or out_len != 1):
                raise ConfigError(
                    f"task.lag={lag} and task.out_len={out_len} are not allowed with transform=next; "
                    "the target is the single value after the window (lag=0, out_len=1)."
                )
            if lag + out_len > context and not outside:  # opt-in: only a carried state could hold the target
                raise ConfigError(
                    f"task.lag + task.out_len = {lag} + {out_len} = {lag + out_len} exceeds task.context={context}: "
                    "the target block would lie outside the window the model sees; use lag + out_len <= context, "
                    "or set task.target_outside_window=true to train on it anyway."
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
        return kind(
            name=str(g.get("name", "custom")), stream=stream, vocab=vocab, context=context, lag=lag, out_len=out_len,
            framing=framing, transform=transform, encoding=encoding, objective=objective, scale=scale, step=step,
            start_low=start_low, start_high=start_high, windows_per_sequence=wps, stateful=stateful, seq_len=seq_len,
            chunk=chunk, target_outside_window=outside, pad_start=pad_start,
        )  # fmt: skip

    @staticmethod
    def check_stream(transform: str, encoding: str, objective: str, framing: str) -> None:
        """The transform a uniform stream allows (an arithmetic one: src/datamodules/tasks/progression.py)."""
        if transform == "next":
            raise ConfigError("task.transform='next' is not allowed with task.stream=uniform; use identity or invert.")

    # -- generation ----------------------------------------------------------------------------
    def uniform(self, gen: Any, shape: tuple[int, ...]) -> Any:
        """i.i.d. integers in [0, vocab): (shape) long, on the generator's device."""
        import torch

        return torch.randint(self.vocab, shape, generator=gen, device=gen.device)

    def transformed(self, source: Any) -> Any:
        """Apply the task's transform f to the source observations of the targets."""
        if self.transform == "invert":
            return (self.vocab - 1) - source  # 1 - x for bits
        return source

    def batch(self, gen: Any, batch: int) -> tuple[Any, Any, Any]:
        """One batch of independent samples. Window framing: x (batch, context), y (batch, out_len),
        mask all True; windows are cut from fresh sequences of `windows_per_sequence + context - 1`
        observations with a stride of one (the tutorials' shift-and-drop framing), consecutive rows
        from one sequence, in order, so a block of whole sequences can be served as consecutive
        batches (for stateful windows, in the training layout). Label framing: fresh sequences
        x (batch, context) and their `targets`."""
        if self.framing == "label":
            return self.sequences(gen, batch, self.context)
        # span = max(context, lag + out_len): x is the last `context` observations of each span, so a
        # target outside the window (`target_outside_window`) is still a real past observation
        import torch

        # With pad_start the sequence is first left-padded with context - 1 pad symbols (index
        # `vocab`), which keeps the incomplete windows at its start (`rows_per_sequence` rows a sequence)
        c, wps, span = self.context, self.windows_per_sequence, max(self.context, self.lag + self.out_len)
        n_seq = math.ceil(batch / self.rows_per_sequence)
        seq = self.uniform(gen, (n_seq, wps + span - 1))
        if self.pad_start:
            seq = torch.cat([seq.new_full((n_seq, c - 1), self.vocab), seq], dim=1)
        spans = seq.unfold(1, span, 1).reshape(-1, span)[:batch]
        return spans[:, span - c :], *self.targets(spans)

    def sequences(self, gen: Any, rows: int, length: int | None = None) -> tuple[Any, Any, Any]:
        """`rows` fresh label-framed sequences of `length` steps (default `seq_len`: the stream form
        of stateful training, cut into batches of `chunk` steps, and its held-out sequences)."""
        return (x := self.uniform(gen, (rows, length or self.seq_len)), *self.targets(x))

    def targets(self, x: Any) -> tuple[Any, Any]:
        """Targets of x and the mask of those that count. Window framing: f of the target block
        ending `lag` steps before the newest observation, (batch, out_len), all counted. Label
        framing over x (batch, T): y_t = f(x_{t-lag}), steps t < lag masked."""
        import torch

        if self.framing == "window":  # x (batch, n) ending at the newest observation
            n, k, lag = x.shape[1], self.out_len, self.lag
            if n < lag + k:  # the target lies before the window (target_outside_window): not in x
                y = x.new_zeros(x.shape[0], k)
                return y, torch.zeros_like(y, dtype=torch.bool)
            source = x[:, n - lag - k : n - lag]
            if not self.pad_start:
                return self.transformed(source), torch.ones_like(source, dtype=torch.bool)
            observed = source != self.vocab  # a target whose source is a pad symbol does not count (y = 0)
            return self.transformed(source).masked_fill(~observed, 0), observed
        b, t = x.shape
        lag = self.lag
        source = torch.cat([x.new_zeros(b, lag), x[:, : t - lag]], dim=1) if lag else x
        mask = (torch.arange(t, device=x.device) >= lag).expand(b, t).contiguous()
        return self.transformed(source), mask

    # -- baseline ------------------------------------------------------------------------------
    def chance_on(self, y: Any, mask: Any) -> dict[str, float]:
        """What a model that ignores its input scores on the evaluation set (y, mask).

        classification: uniform guessing over the vocabulary (loss ln V, acc 1/V, exact V^-K);
        regression: always predicting the mean target of the set (mse = variance of the scaled target;
        its predictions have that mean and std 0, the collapse a regression model can fall into).
        """
        if self.objective == "classification":  # exact: the mean of V^-K_i over samples with K_i > 0 targets
            k = mask.sum(dim=1)
            exact = (float(self.vocab) ** -k[k > 0].double()).mean().item()
            return {"loss": math.log(self.vocab), "acc": 1 / self.vocab, "exact": exact}
        target = y[mask].double()
        mean = target.mean()
        const = mean.round()
        hit = (y == const) | ~mask
        mse = ((target - mean) / self.scale).pow(2).mean().item()
        return {
            "loss": mse,  # the loss is this MSE on scaled values
            "mse": mse,
            "mae": (target - mean).abs().mean().item(),
            "acc": (target == const).double().mean().item(),
            "exact": hit.all(dim=1)[mask.any(dim=1)].double().mean().item(),
            "pred_mean": mean.item(),
            "pred_std": 0.0,
        }


TASK = Echo
