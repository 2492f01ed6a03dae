"""This process's place among the processes that torchrun or `accelerate launch` started.

Both launchers set WORLD_SIZE and RANK; a plain `latentrm ...` is rank 0 of 1. Stages that split work by rank
(data build's shards, RL's per-device batch) read it here, so one process needs no process group at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def world_size() -> int:
    """Processes in this run (1 when no launcher set WORLD_SIZE)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def process_group() -> tuple[int, int, Callable[[], object]]:
    """(rank, world size, barrier) of this process: under a launcher (WORLD_SIZE > 1) a gloo process group for
    the barriers (the work itself needs no collective); in one process, rank 0 of 1 and a barrier that does
    nothing."""
    world = world_size()
    if world <= 1:
        return 0, 1, lambda: None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), dist.barrier
