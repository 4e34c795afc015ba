"""Echo: a uniform stream of integers in [0, vocab), and targets read back from it.

window framing: x (batch, context) -> y (batch, out_len), f of the target block ending `lag` steps
before the newest observation (echo_current, echo_lag, echo_sequence, partial_echo).
label framing: x (batch, T) -> y (batch, T), y_t = f(x_{t-lag}) with steps t < lag masked
(lag_regression, invert_bits), optionally stateful: consecutive batches continue the same streams
(echo_lag_online). f is `identity` or `invert` ((vocab - 1) - x, 1 - x for bits).

The fields and rules are those of every stream task: `progression` (the arithmetic stream,
progression.py) extends this class with its own stream, defaults and `check_stream`. The family
decides the class; `stream` must agree with it (a saved config without `family` picks the family
by its stream: src/datamodules/tasks/__init__.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, model_validator

from src.datamodules.tasks.base import Task
from src.schema import ConfigError, NonNegInt, PosInt

Int = Annotated[int, Field(ge=-(10**9))]  # progression values: any integer a long can hold after steps
Vocab = Annotated[int, Field(ge=2, json_schema_extra={"allowed": "a stream needs at least 2 symbols (vocab >= 2)"})]


def tbptt_of(info: ValidationInfo) -> int:
    """The model's truncation window, passed as context (`check(..., tbptt=...)`), checked here
    first: it fills a null task.chunk."""
    tbptt = (info.context or {}).get("tbptt", 1)
    if isinstance(tbptt, bool) or not isinstance(tbptt, int) or tbptt < 1:
        raise ConfigError(f"model.tbptt={tbptt!r} is not allowed; it must be an integer >= 1.")
    return tbptt


class Echo(Task):
    """The uniform stream's task. seq_len (null: context) is a stateful stream's fresh sequence,
    chunk (null: model.tbptt) the steps of one of its batches."""

    STREAM: ClassVar[str] = "uniform"  # the `stream` this family generates

    name: str = "custom"
    family: Literal["echo"] = "echo"
    stream: Literal["uniform", "arithmetic"] = "uniform"
    framing: Literal["window", "label"] = "window"
    transform: Literal["identity", "invert", "next"] = "identity"
    encoding: Literal["onehot", "embedding", "scalar"] = "onehot"
    objective: Literal["classification", "regression"] = "classification"
    vocab: Vocab = 100
    context: PosInt
    lag: NonNegInt = 0
    out_len: PosInt = 1
    scale: Annotated[float, Field(gt=0)] = 1.0
    step: Int = 10
    start_low: Int = 0
    start_high: int = 99
    windows_per_sequence: PosInt = 1
    stateful: bool = False
    pad_start: bool = False
    target_outside_window: bool = False  # window framing: let lag + out_len exceed context (opt-in)
    seq_len: PosInt | None = None
    chunk: PosInt | None = None

    @model_validator(mode="before")
    @classmethod
    def fill_nulls(cls, data: Any, info: ValidationInfo) -> Any:
        """seq_len null: context; chunk null: the model's tbptt."""
        tbptt = tbptt_of(info)
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if data.get("seq_len") is None:
            data["seq_len"] = data.get("context")
        if data.get("chunk") is None:
            data["chunk"] = tbptt
        return data

    @model_validator(mode="after")
    def fields_agree(self, info: ValidationInfo) -> Echo:
        """The rules between the stream's keys (and the model's tbptt)."""
        stream, framing, stateful, tbptt = self.stream, self.framing, self.stateful, tbptt_of(info)
        if stream != self.STREAM:
            other = "echo" if stream == "uniform" else "progression"
            raise ConfigError(
                f"task.stream={stream!r} is not allowed with task.family={self.family}, which generates "
                f"{self.STREAM} streams; use stream={self.STREAM}, or family={other} for {stream} streams."
            )
        if self.start_high < self.start_low:
            raise ConfigError(
                f"task.start_high={self.start_high!r} is not allowed; it must be an integer >= {self.start_low}."
            )
        if self.pad_start and (framing != "window" or stream != "uniform"):
            why = (
                "label framing already reads every step from the start of a sequence (targets before it masked)"
                if framing != "window"
                else "a progression window is a fresh run of values, not a cut from one sequence with a start to pad"
            )
            raise ConfigError(
                f"task.pad_start=true is not allowed with task.framing={framing!r} and task.stream={stream!r}: {why}; "
                "use framing=window with stream=uniform, or pad_start=false."
            )
        if self.pad_start and stateful:
            raise ConfigError(
                "task.pad_start=true is not allowed with task.stateful=true: Keras' stateful windows (the tutorials' "
                "layout) start each sequence at its first whole window; use one of the two."
            )
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
        lag, out_len, context = self.lag, self.out_len, self.context
        if self.target_outside_window and not (framing == "window" and lag + out_len > context):
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
        if self.scale != 1.0 and self.encoding != "scalar" and self.objective == "classification":
            # scale divides scalar inputs and regression targets; anything else would ignore it silently
            raise ConfigError(
                f"task.scale={self.scale:g} has no effect with task.encoding={self.encoding!r} and "
                "task.objective='classification'; use scale=1, encoding=scalar or objective=regression."
            )
        self.check_stream()
        return self

    def check_stream(self) -> None:
        """The transform a uniform stream allows (an arithmetic one: progression.py)."""
        if self.transform == "next":
            raise ConfigError("task.transform='next' is not allowed with task.stream=uniform; use identity or invert.")

    @model_validator(mode="after")
    def target_fits(self, info: ValidationInfo) -> Echo:
        """The target block lies where the framing reads it."""
        lag, out_len, context, seq_len, chunk = self.lag, self.out_len, self.context, self.seq_len, self.chunk
        if self.framing == "window":
            if self.transform == "next" and (lag != 0 or out_len != 1):
                raise ConfigError(
                    f"task.lag={lag} and task.out_len={out_len} are not allowed with transform=next; "
                    "the target is the single value after the window (lag=0, out_len=1)."
                )
            if lag + out_len > context and not self.target_outside_window:  # only a carried state could hold it
                raise ConfigError(
                    f"task.lag + task.out_len = {lag} + {out_len} = {lag + out_len} exceeds task.context={context}: "
                    "the target block would lie outside the window the model sees; use lag + out_len <= context, "
                    "or set task.target_outside_window=true to train on it anyway."
                )
            return self
        if out_len != context:
            raise ConfigError(
                f"task.out_len={out_len} is not allowed with task.framing=label, which has a target at every "
                f"timestep; set out_len equal to task.context={context}."
            )
        if self.stateful and seq_len != context:
            # validation runs whole sequences from a reset state, with a target at every step
            raise ConfigError(
                f"task.seq_len={seq_len} differs from task.context={context}: a stateful model's context is "
                "the whole sequence since its last reset; set both (and out_len) to the same length."
            )
        horizon = seq_len if self.stateful else context
        if lag >= horizon:
            name = "task.seq_len" if self.stateful else "task.context"
            raise ConfigError(f"task.lag={lag} leaves no target inside {name}={horizon}; use lag < {horizon}.")
        if self.stateful and seq_len % chunk:
            raise ConfigError(
                f"task.chunk={chunk} does not divide task.seq_len={seq_len}; each fresh sequence must split "
                "into whole batches of chunk steps."
            )
        if self.stateful and tbptt_of(info) > chunk:
            raise ConfigError(
                f"model.tbptt={tbptt_of(info)} exceeds task.chunk={chunk}: gradients cannot flow back past the start "
                "of a batch; use tbptt <= chunk (or chunk=null, which follows tbptt)."
            )
        return self

    # -- what the trainer asks -----------------------------------------------------------------
    @property
    def rows_per_sequence(self) -> int:
        """Windows cut from one sequence: `windows_per_sequence` whole ones, plus with pad_start the
        context - 1 incomplete ones at its start (left-padded)."""
        if self.framing != "window":
            return 1
        return self.windows_per_sequence + (self.context - 1 if self.pad_start else 0)

    @property
    def batch_steps(self) -> int:
        return self.chunk if self.stateful_stream else self.context

    @property
    def sample_steps(self) -> int:
        return self.seq_len if self.stateful_stream else self.context

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
