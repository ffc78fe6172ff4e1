"""Data-parallel training under torchrun: which process this is, and what the ranks share.

Without torchrun's RANK / WORLD_SIZE (or with one process) training runs in this process on
CUDA when there is one, else on the CPU; with them, every rank joins one process group
(NCCL on CUDA, gloo on the CPU) and trains its shard of each epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..files import atomic_write_text

__all__ = ["DistributedEnv", "init_distributed", "gather_rng_states", "sync_buffers", "record_rank_weights", "barrier"]


@dataclass
class DistributedEnv:
    """This process's rank, the number of processes and the device it trains on."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and evaluates."""
        return self.rank == 0


def init_distributed() -> DistributedEnv:
    """Join the torchrun process group if there is one (idempotent)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistributedEnv(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    use_cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return DistributedEnv(rank, world, device)


def gather_rng_states(env: DistributedEnv, state: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's `state` (a generator state), in rank order; called by all ranks."""
    if env.world == 1:
        return [state]
    gathered = [torch.zeros_like(state) for _ in range(env.world)]
    dist.all_gather(gathered, state)
    return gathered


def sync_buffers(model: nn.Module, env: DistributedEnv) -> None:
    """Give every rank rank 0's buffers. DDP keeps the parameters in sync, but each rank's BN
    running statistics follow its own batches: take rank 0's (what gets saved), so that the
    teacher and the replicas agree."""
    if env.world > 1:
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def record_rank_weights(model: nn.Module, env: DistributedEnv, out_dir: Path) -> None:
    """Write every rank's weight digest to ranks.json (DDP keeps the replicas identical)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    mine = torch.tensor(list(digest.digest()), dtype=torch.int64)
    digests = [mine]
    if env.world > 1:
        digests = [torch.zeros_like(mine) for _ in range(env.world)]
        dist.all_gather(digests, mine)
    if env.main:
        hexes = [bytes(d.tolist()).hex() for d in digests]
        atomic_write_text(out_dir / "ranks.json", json.dumps({"world_size": env.world, "sha256": hexes}))


def barrier(env: DistributedEnv) -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if env.world > 1:
        dist.barrier()
