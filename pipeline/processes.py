"""One process or several under torchrun: joining the process group and taking turns."""

import contextlib
import os

import torch
import torch.distributed as dist


def init_distributed(use_cuda):
    """(rank, world_size, device) under torchrun (WORLD_SIZE > 1), else (0, 1, None).

    Joins the process group: NCCL with one GPU per process (cuda:LOCAL_RANK), or gloo on CPUs.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, None
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return dist.get_rank(), world_size, torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return dist.get_rank(), world_size, torch.device("cpu")


def from_rank_zero(value, world_size):
    """Rank 0's value, on every process (e.g. rank 0's verdict, so that all stop or none)."""
    if world_size == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


@contextlib.contextmanager
def rank_zero_first(world_size, rank):
    """Rank 0 runs the block first (e.g. builds the feature cache), the others then read its result."""
    if world_size > 1 and rank != 0:
        dist.barrier()
    yield
    if world_size > 1 and rank == 0:
        dist.barrier()
