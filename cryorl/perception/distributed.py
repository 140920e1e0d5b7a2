"""Distributed data-parallel training of hole-quality models: the process group, the DDP wrapper, compression.

Launch one process per CPU socket or GPU with ``torchrun``::

    torchrun --standalone --nproc-per-node 2 -m cryorl perception train --distributed --batch-size 256 \\
        --lr-scaling linear --out predictor/

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous; :func:`start` joins the group —
NCCL when CUDA is available, gloo otherwise. Every process loads the same crops; the sampler of
:mod:`cryorl.perception.training` gives each its interleaved share of every global batch
(``DistributedSampler``), DDP averages the gradients, and only rank 0 validates, prints, writes checkpoints and
saves the predictor. Gradients can travel compressed (PyTorch's DDP communication hooks): ``fp16`` halves the
bytes, ``powersgd`` sends a rank-``r`` approximation after the first steps.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Processes", "current", "start", "stop", "wrap", "share_buffers", "mean_over_processes", "COMPRESSIONS"]

COMPRESSIONS = ("none", "fp16", "powersgd")


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1 or (dist.is_available() and dist.is_initialized())


def current() -> Processes:
    """The processes of an initialised process group, or the single process."""
    if dist.is_available() and dist.is_initialized():
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else \
            torch.device("cpu")
        return Processes(dist.get_rank(), dist.get_world_size(), device)
    return Processes()


def start(backend: str = "auto") -> Processes:
    """Join the process group ``torchrun`` describes in the environment (``auto``: NCCL with CUDA, else gloo)."""
    missing = [key for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
    if missing:
        raise RuntimeError(f"distributed training runs under torchrun ({', '.join(missing)} not set): "
                           "torchrun --standalone --nproc-per-node N -m cryorl perception train --distributed …")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return current()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(value: float) -> float:
    """The mean of ``value`` over the processes (the value itself for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    total = torch.tensor([value], dtype=torch.float64, device=current().device)
    dist.all_reduce(total)
    return float(total.item()) / dist.get_world_size()


def share_buffers(model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics)."""
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def wrap(model: torch.nn.Module, processes: Processes, compression: str = "none", powersgd_rank: int = 2
         ) -> torch.nn.Module:
    """``model`` in DDP, gradients compressed as asked. Buffers (batch-norm running statistics) are not
    broadcast by DDP: the training loop calls :func:`share_buffers` at the start of every step."""
    from torch.nn.parallel import DistributedDataParallel

    if compression not in COMPRESSIONS:
        raise ValueError(f"gradient compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
    # PowerSGD under gloo: one gradient bucket, since gloo can take several buckets' all-reduces out of order
    one_bucket = compression == "powersgd" and dist.get_backend() == "gloo"
    ddp = DistributedDataParallel(model, device_ids=[processes.device] if processes.device.type == "cuda" else None,
                                  forward_sync_buffers=False, bucket_cap_mb=4096 if one_bucket else None)
    if compression == "fp16":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif compression == "powersgd":
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook

        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=powersgd_rank,
                                            start_powerSGD_iter=2, min_compression_rate=1.0)
        ddp.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    return ddp
