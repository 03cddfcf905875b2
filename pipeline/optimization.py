"""The optimizer and its schedule: AdamW with BERT's weight-decay groups, a linear warm-up and
decay, and how many steps a run takes (by epochs, or by steps for a fraction of an epoch)."""

import math
from typing import NamedTuple

import torch


def parameter_groups(model, weight_decay_rate):
    """The optimizer's two groups: weight decay on every weight but biases and LayerNorm's, as
    BERT was trained."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay_rate}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model, learning_rate, weight_decay_rate):
    """AdamW over parameter_groups, fused where the parameters' device allows it."""
    # The fused AdamW updates every tensor in one pass: on a CPU its step is about 4 times
    # faster than the default loop's (tools/benchmark.py), and on a GPU it lets the fp16
    # GradScaler skip a step without waiting for the host.
    fusable = all(param.device.type in ("cpu", "cuda") for param in model.parameters())
    return torch.optim.AdamW(
        parameter_groups(model, weight_decay_rate), lr=learning_rate, fused=fusable or None
    )


def linear_warmup_decay(optimizer, warmup_steps, total_steps):
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def schedule(warmup_proportion, total_steps):
    """The scheduler arguments of a distiller's train(): linear_warmup_decay over total_steps
    (the distiller builds it once its projections have joined the optimizer)."""
    return {
        "scheduler_class": linear_warmup_decay,
        "scheduler_args": {"warmup_steps": int(warmup_proportion * total_steps), "total_steps": total_steps},
    }


class TrainingLength(NamedTuple):
    steps_per_epoch: int  # optimizer steps
    total_steps: int
    train_arguments: dict  # the distiller's train(): {"num_epochs": ...} or {"num_steps": ...}
    ckpt_steps: int | None  # by steps: a checkpoint every this many steps (TrainingConfig.ckpt_steps)


def training_length(num_train_epochs, gradient_accumulation_steps, ckpt_frequency, num_batches):
    """How long a run of num_batches batches an epoch trains (a TrainingLength).

    A whole number of epochs trains by epochs (ckpt_frequency checkpoints in each); a fraction
    trains by steps, where the same frequency becomes a checkpoint every ckpt_steps steps.
    """
    steps_per_epoch = num_batches // gradient_accumulation_steps
    total_steps = max(1, math.ceil(steps_per_epoch * num_train_epochs))
    if num_train_epochs == int(num_train_epochs):
        return TrainingLength(steps_per_epoch, total_steps, {"num_epochs": int(num_train_epochs)}, None)
    ckpt_steps = max(1, steps_per_epoch // ckpt_frequency)
    return TrainingLength(steps_per_epoch, total_steps, {"num_steps": total_steps}, ckpt_steps)
