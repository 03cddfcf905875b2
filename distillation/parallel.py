"""Training on several processes (torchrun): who writes, and what the processes agree on."""

import torch
import torch.distributed as dist


def is_main_process():
    """Rank 0, or the only process: the one that writes checkpoints, logs and results."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def average_gradients(params):
    """One all-reduce for the gradients of params (a parameter a batch missed counts 0)."""
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for param, averaged in zip(params, flat.split([p.numel() for p in params])):
        param.grad = averaged.view_as(param).clone()


def flags_of_any_process(flags, device):
    """Whether each of flags is set on any process (a signal may reach the processes a step
    apart; rank 0 alone knows that its checkpoint writer failed), in one all-reduce."""
    flags = torch.tensor([int(flag) for flag in flags], device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [bool(flag) for flag in flags.tolist()]
