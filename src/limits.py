"""What the machine can hold: the memory a config needs, checked in `src.run_config.validate`
before anything is built (threads and nodes: src/hardware.py).

The memory estimate adds up the tensors a run keeps alive at its peak (float32 = 4 bytes, integer
inputs and targets = 8): a training batch and its one-hot inputs, the two evaluation sets (and the
copy of the test set the chance levels are computed from), one evaluation batch with its one-hot
inputs, activations and logits, the parameters with their gradients and Adam's two moments, and
the activations kept for backpropagation (calibrated on measured peaks, see `forward_bytes`). The
process itself (Python, torch, Lightning: about 0.45 GB) comes on top, so a config refused here
would not have fit.
"""

from __future__ import annotations

import math
import os
from typing import Any

from src.datamodules.tasks import Task
from src.schema import ConfigError

GB = 1024**3


def available_memory(accelerator: str) -> tuple[int, str]:
    """(bytes free for a new run, where that number comes from): the GPU's free memory for
    accelerator=gpu (batches and evaluation sets are generated on the device), else the kernel's
    MemAvailable (what can be allocated without swapping)."""
    if accelerator == "gpu":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free, "free on the GPU"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available (MemAvailable)"
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available"


def memory_estimate(task: Task, net: dict[str, Any], data: dict[str, Any], world: int) -> dict[str, int]:
    """Bytes one process needs at its peak, by part: {'training batch', 'evaluation', 'parameters',
    'activations'}. net: the checked model node (cell, hidden, layers, topology, embedding_dim). The
    cell's `cost` (weight matrices per layer) and the topology's `has_decoder` (a second cell as large
    as the encoder) are read from their classes."""
    from src.models import cells
    from src.models.topologies import TOPOLOGIES

    f32, i64 = 4, 8
    gates, hidden, layers = cells.get(net["cell"]).cost, net["hidden"], net.get("layers", 1)
    width = {
        "onehot": task.alphabet,
        "embedding": net.get("embedding_dim", 16),
        "scalar": 1,
        "features": task.features,
    }[task.encoding]
    n_out = 1 if task.objective == "regression" else task.vocab
    encdec = TOPOLOGIES[net["topology"]].has_decoder

    def sample_bytes(steps: int, rows: int) -> int:
        """Integer inputs, targets, mask of `rows` samples of `steps` observations."""
        return rows * (steps * i64 + task.out_len * (i64 + 1))

    def forward_bytes(rows: int, steps: int, keep: bool) -> int:
        """Encoded inputs, recurrent activations and logits of one forward pass. Training (keep)
        holds about 4 floats per gate unit and step (pre-activations, activations and their
        gradients) and 4 copies of the encoded input; measured with Lightning 2.6 / torch 2.13 on
        CPU: peak RSS grows 25.6-26.6 KB per row of the default LSTM(50) (vocab 100, context 5) and
        74.8 KB per row with hidden=200, against 25.2 and 73.2 KB estimated here."""
        seq = steps + (task.out_len if encdec else 0)
        per_unit = 4 * gates * layers if keep else gates + 1
        return (
            f32
            * rows
            * (steps * width * (4 if keep else 1) + seq * hidden * per_unit + task.out_len * n_out * (3 if keep else 1))
        )

    rows = data["batch_size"] // world
    steps, block = task.batch_steps, task.sample_steps  # a stateful stream's batch: a chunk of its block
    per_block = math.lcm(rows, task.rows_per_sequence) // rows if task.rows_per_sequence > 1 else 1
    train_batch = sample_bytes(block, rows * per_block)
    eval_steps = task.sample_steps
    shards = math.ceil(data["val_size"] / world) + 2 * math.ceil(data["test_size"] / world)
    eval_rows = min(data["eval_batch_size"], max(data["val_size"], data["test_size"]))
    evaluation = sample_bytes(eval_steps, shards) + forward_bytes(eval_rows, eval_steps, keep=False)

    def rnn_params(inputs: int) -> int:
        return gates * hidden * (inputs + hidden + 2) + (layers - 1) * gates * hidden * (2 * hidden + 2)

    params = rnn_params(width) + (rnn_params(hidden) if encdec else 0) + hidden * n_out + n_out
    params += task.alphabet * width if task.encoding == "embedding" else 0
    return {
        "training batch": train_batch,
        "evaluation": evaluation,
        "parameters": 4 * f32 * params,  # weights, gradients, Adam's two moments
        "activations": forward_bytes(rows, steps, keep=True),
    }


# The keys that set each part, for the message: what to lower.
PART_KEYS = {
    "training batch": "data.batch_size, task.context",
    "evaluation": "data.val_size, data.test_size, data.eval_batch_size",
    "parameters": "model.hidden, task.vocab",
    "activations": "data.batch_size, task.context, model.hidden",
}


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1024**2:.0f} MB"


def check_memory(task: Task, net: dict[str, Any], data: dict[str, Any], hw: dict[str, Any], world: int) -> None:
    """Refuse a config whose estimate exceeds the memory of this machine (all of its processes:
    a DDP run on CPU starts `world` of them on one machine, the GPUs of a node each hold one)."""
    parts = memory_estimate(task, net, data, world)
    here = 1 if hw["accelerator"] == "gpu" else world // hw.get("num_nodes", 1)
    need = here * sum(parts.values())
    free, where = available_memory(hw["accelerator"])
    if need <= free:
        return
    top = max(parts, key=parts.__getitem__)
    detail = ", ".join(f"{k} {_gb(v * here)}" for k, v in parts.items())
    raise ConfigError(
        f"this config needs at least {_gb(need)} of memory ({detail}), more than the {_gb(free)} {where} on this "
        f"machine; lower {PART_KEYS[top]} (data.batch_size={data['batch_size']}, task.context={task.context}, "
        f"task.vocab={task.vocab}, model.hidden={net['hidden']})."
    )
