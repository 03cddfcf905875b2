"""One process or several under torchrun: joining the process group and taking turns.

Rank 0 alone evaluates, checks the teachers and writes the run's records; every process
trains on its share of each batch. `launched` gives main.py a Processes that says which
process this is and lets the others wait for rank 0 or take its verdict.
"""

import contextlib
import dataclasses
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process among the run's: its rank, how many there are, and its device."""

    rank: int
    world_size: int
    device: torch.device | str

    @property
    def is_main(self):
        """Rank 0: the process that evaluates and writes the run's records."""
        return self.rank == 0

    def main_first(self):
        """A block rank 0 runs first (e.g. building the feature cache); the others then read its result."""
        return rank_zero_first(self.world_size, self.rank)

    def on_main(self, work):
        """work() on rank 0 alone, its value there (None elsewhere); a ValueError it raises
        stops every process, so that all stop or none."""
        value, failure = None, None
        if self.is_main:
            try:
                value = work()
            except ValueError as error:
                failure = str(error)
        if failure := from_rank_zero(failure, self.world_size):
            raise ValueError(failure)
        return value


@contextlib.contextmanager
def launched(no_cuda):
    """The Processes of this run (one, or torchrun's), leaving the process group at the end."""
    use_cuda = not no_cuda and torch.cuda.is_available()
    rank, world_size, device = init_distributed(use_cuda)
    try:
        yield Processes(rank, world_size, device or ("cuda" if use_cuda else "cpu"))
    finally:
        if world_size > 1:
            dist.destroy_process_group()


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
