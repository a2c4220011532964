"""Encoding a collection on several processes (GPUs, machines) with torchrun; rank 0 builds the index.

    torchrun --nproc-per-node 8 -m twotowers.index build --model DIR --collection collection.tsv --out OUT
    torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port 29500 --nproc-per-node 8 \\
        -m twotowers.index build ...                                   # the same on each of two machines

Every rank reads the same stream of passages and cuts it into the same chunks; of each chunk, rank r
encodes the r-th contiguous slice on its own device (`cuda:LOCAL_RANK`, else the CPU), and an
all-gather (NCCL on GPUs, gloo on CPUs) hands rank 0 the chunk's vectors in order: what one process
would have encoded. Rank 0 alone inserts, writes, checkpoints and finishes (twotowers/index/build.py);
it tells the others where a resumed build starts, or that it could not start at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

# Long enough for rank 0's slowest step between two chunks (a checkpoint saving a 16 GB graph; skipping
# the passages a resumed build already holds) before the other ranks give up waiting.
TIMEOUT = timedelta(hours=2)


@dataclass
class World:
    """This process's place among torchrun's: rank, how many, and the device it encodes on."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str | None = None  # alone: wherever the model already is (a GPU if there is one)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def broadcast(self, value):
        """rank 0's `value` on every rank (a no-op alone)."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sharded(self, encode: Callable[[list[str]], np.ndarray], dim: int) -> Callable[[list[str]], np.ndarray]:
        """`encode` spread over the ranks: each encodes its slice of the texts, every rank gets all the
        vectors `[len(texts), dim]`, in order. Alone: `encode` itself."""
        if self.size == 1:
            return encode
        import torch
        import torch.distributed as dist

        def run(texts: list[str]) -> np.ndarray:
            bounds = np.linspace(0, len(texts), self.size + 1).astype(int)  # contiguous slices, sizes within 1
            a, b = bounds[self.rank], bounds[self.rank + 1]
            width = int(np.diff(bounds).max())
            mine = torch.zeros((width, dim), dtype=torch.float32, device=self.device)  # padded: equal shapes
            if b > a:
                mine[: b - a] = torch.from_numpy(np.ascontiguousarray(encode(texts[a:b]), dtype=np.float32))
            parts = [torch.empty_like(mine) for _ in range(self.size)]
            dist.all_gather(parts, mine)
            return np.concatenate([p[: n].cpu().numpy() for p, n in zip(parts, np.diff(bounds))])

        return run

    def leave(self) -> None:
        """Wait for every rank to be done with the collectives, then leave the group."""
        if self.size == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def join() -> World:
    """This process's World from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); with more than one
    process, the process group is set up (NCCL where there is a GPU, else gloo) and the GPU chosen."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size == 1:
        return World()
    import torch
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    device = "cpu"
    if torch.cuda.is_available():
        torch.cuda.set_device(local)  # "cuda" means this rank's GPU from here on (the model loads there)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device != "cpu" else "gloo", timeout=TIMEOUT)
    return World(rank, size, local, device)
