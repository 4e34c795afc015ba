"""The `hardware` node: where a run executes (accelerator, processes, precision, threads), its
declared schema and the rules that depend on this machine (CUDA devices, cores, a cluster
environment), and the Lightning strategy it asks for.

The defaults of each option live in its yaml (conf/hardware/cpu.yaml, ddp.yaml, gpu.yaml): the
three differ in every key, so the schema declares types, ranges and rules, and a default only for
the key a yaml may leave out (`backend`).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from src.schema import ConfigError, Node, PosInt

# Environment variables by which Lightning's cluster environments (plain torchrun/launch with
# MASTER_ADDR + NODE_RANK, SLURM, TorchElastic, LSF, Kubeflow) tell a process where it runs.
CLUSTER_VARS = (("MASTER_ADDR", "NODE_RANK"), ("SLURM_NTASKS",), ("TORCHELASTIC_RUN_ID",), ("LSB_JOBID",))
# A training process before its data: peak RSS of a debug=fast run is 0.45 GB (metrics.json
# peak_rss_mb 454-458 on CPU, torch 2.13, Lightning 2.6).
PROCESS_BYTES = int(0.45 * 1024**3)


def cores() -> int:
    """CPU cores this process may run on (a container's or a scheduler's cpuset, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Hardware(Node):
    accelerator: Literal["cpu", "gpu"]
    devices: PosInt
    num_nodes: PosInt
    strategy: Literal["auto", "ddp"]
    precision: Literal["32-true", "64-true", "bf16-mixed", "16-mixed"]
    threads: int | None = Field(
        ge=1,
        json_schema_extra={
            "allowed": f"use null (torch's default) or an integer from 1 to {cores()} (the CPU cores this process may use)"
        },
    )
    backend: Annotated[
        Literal["gloo", "nccl"] | None, Field(json_schema_extra={"allowed": "choose null (automatic), gloo or nccl"})
    ] = None

    @property
    def world(self) -> int:
        """Processes of the run: devices on each of num_nodes machines."""
        return self.devices * self.num_nodes

    @model_validator(mode="after")
    def _rules(self) -> Hardware:
        check_cluster(self.num_nodes)
        if self.world > 1 and self.strategy != "ddp":
            raise ConfigError(
                f"hardware.devices={self.devices} with hardware.num_nodes={self.num_nodes} runs {self.world} "
                "processes, which needs hardware.strategy=ddp; use hardware=ddp."
            )
        if self.precision == "16-mixed" and self.accelerator == "cpu":
            raise ConfigError("hardware.precision='16-mixed' needs a GPU (CPUs have no fp16 autocast); use bf16-mixed.")
        if self.backend == "nccl" and self.accelerator != "gpu":
            raise ConfigError("hardware.backend='nccl' needs hardware.accelerator=gpu; use gloo (or null) on CPU.")
        if self.accelerator == "gpu":
            check_cuda(self.devices)
        check_threads(self.threads)
        return self


def check_cuda(devices: int) -> None:
    import torch  # only for accelerator=gpu: a CPU config is checked without the import

    if not torch.cuda.is_available():
        raise ConfigError(
            "hardware.accelerator='gpu' needs a CUDA device, but torch.cuda.is_available() is False on this "
            "machine; use hardware=cpu (or hardware=ddp, which runs on CPU)."
        )
    if devices > torch.cuda.device_count():
        raise ConfigError(f"hardware.devices={devices} exceeds the {torch.cuda.device_count()} CUDA devices here.")


def check_processes(hw: Hardware) -> None:
    """Each CPU rank is a Python process with torch and Lightning loaded before it holds any data
    (the memory estimate of src/limits.py counts the data): the ranks of this machine must fit.
    Checked by rank 0 before it starts the others (src.run_config.validate)."""
    from src.limits import GB, available_memory

    devices = hw.devices
    free, where = available_memory("cpu")
    if hw.accelerator == "cpu" and devices > 1 and devices * PROCESS_BYTES > free:
        raise ConfigError(
            f"hardware.devices={devices} starts {devices} processes of about {PROCESS_BYTES / GB:.2f} GB each "
            f"(Python, torch and Lightning), more than the {free / GB:.1f} GB {where} on this machine; use at most "
            f"hardware.devices={max(1, int(free // PROCESS_BYTES))}."
        )


def check_threads(threads: int | None) -> None:
    """More torch threads than cores only adds contention (and thousands exhaust the process)."""
    n = cores()
    if threads is not None and threads > n:
        raise ConfigError(
            f"hardware.threads={threads} exceeds the {n} CPU cores this process may use; use an integer "
            f"from 1 to {n} (or null: torch's default)."
        )


def check_cluster(num_nodes: int) -> None:
    """num_nodes > 1 on one machine waits forever for nodes that never connect."""
    if num_nodes > 1 and not any(all(v in os.environ for v in group) for group in CLUSTER_VARS):
        raise ConfigError(
            f"hardware.num_nodes={num_nodes} needs a cluster environment that tells each machine its rank "
            "(MASTER_ADDR and NODE_RANK, or a SLURM, TorchElastic or LSF job), and none is set here; on one machine "
            "use hardware.num_nodes=1 and hardware.devices for the processes."
        )


def build_strategy(hw: Any) -> Any:
    """`ddp`: Lightning's DDP, relaunching the script once per extra device (see src/launch.py for
    how that fits Hydra); backend null picks gloo on CPU and nccl on GPU."""
    if hw.strategy != "ddp":
        return hw.strategy
    from pytorch_lightning.strategies import DDPStrategy

    return DDPStrategy(process_group_backend=hw.get("backend"))


# The variables a launcher (Lightning DDP, torchrun, SLURM) sets in the processes it starts for ranks > 0.
RANK_VARS = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "SLURM_PROCID")


def is_primary() -> bool:
    """True in the process a user started; False in the DDP processes Lightning (or a cluster
    scheduler) started for ranks > 0. Only the primary process checks, creates or cleans up the
    run folder."""
    return all(os.environ.get(v, "0") == "0" for v in RANK_VARS)
