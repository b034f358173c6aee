"""Single-process by default, DistributedDataParallel when launched by torchrun (STYLE lesson 9).

`torchrun --nproc_per_node=N -m cnnlab train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; `init_from_env` then joins the
process group (NCCL on CUDA, gloo on the CPU). Each rank takes an interleaved shard of every epoch's permutation with
batch.size / WORLD_SIZE images, so the union of the ranks' batches is exactly the single-process batch and the averaged
gradient equals the single-process gradient (BatchNorm aside, unless train.sync_bn). Only rank 0 logs and writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env() -> DistInfo:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); a no-op for a plain `cnnlab train`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend)
    return info


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0):
    """rank 0's value of `obj` on every rank (e.g. the run folder name, which holds a timestamp)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
