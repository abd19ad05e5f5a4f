"""Data-parallel runs with ``torchrun``: which images a rank streams, and exact merging.

Every rank streams a contiguous shard of whole batches (:func:`shard`) and keeps the global index of
each batch's first image, so metrics that depend on an image's position in the stream (the ACI's
first-images cap, the InfoX folds, where a probe feature row goes) give the same answer as one
process. After the pass the accumulators' sums are all-reduced (sums of sums are exact up to
float64 rounding order); rank 0 writes the results.

Nothing here is needed on one process: when ``torch.distributed`` is not initialised, every
function is the identity (rank 0 of a world of 1).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The default process group's rank and size (0 of 1 without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_environment(device: str) -> World:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1):
    NCCL for CUDA devices, gloo otherwise; on CUDA each rank takes GPU ``LOCAL_RANK``. Returns the
    world; a no-op for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return world()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return world()


def shard(n_images: int, batch_size: int = 1, current: World | None = None) -> range:
    """The contiguous block of image indices this rank streams: whole batches of the
    one-process stream (ranks differ by at most one batch), so every batch holds the same images
    as on one process and the per-image numbers are bit-identical; only the order in which the
    float64 sums are added differs."""
    current = current or world()
    batches = -(-n_images // batch_size)
    if batches < current.size:
        raise ValueError(f"{n_images} images in batches of {batch_size} cannot be shared by "
                         f"{current.size} ranks: every rank needs at least one batch. Use more "
                         "images, a smaller batch or fewer processes.")
    first = current.rank * batches // current.size
    last = (current.rank + 1) * batches // current.size
    return range(first * batch_size, min(last * batch_size, n_images))


def collective_device(fallback: torch.device | str = "cpu") -> torch.device:
    """Where tensors must live for a collective: the current GPU under NCCL, else ``fallback``."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(fallback)


def check_same_keys(keys: list[str], what: str) -> None:
    """Raise (on every rank) if the ranks hold different sums: an all-reduce would hang or mix
    up tensors."""
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(keys))
    if any(other != gathered[0] for other in gathered):
        differing = sorted(set().union(*map(set, gathered)) - set.intersection(*map(set, gathered)))
        raise RuntimeError(f"{what}: the ranks hold different sums ({differing[:5]} ...); every rank "
                           "must stream at least one batch through the same accumulators.")


def broadcast_object(value, source: int = 0):
    """``value`` of rank ``source`` on every rank (the identity on one process)."""
    if world().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]
