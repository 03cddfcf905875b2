"""Temperature and loss-weight schedules.

A temperature scheduler maps (logits_S, logits_T, base_temperature) to a temperature: a number,
or a per-example tensor (batch,). A weight scheduler maps (step, total_steps) to a factor that
multiplies a loss's base weight.
"""

import torch


def constant_temperature_scheduler(logits_S, logits_T, base_temperature):
    return base_temperature


def flsw_temperature_scheduler_builder(beta, gamma, eps=1e-4):
    """Focal-loss-style weights (arXiv:1911.07471): examples where student and teacher disagree
    get a lower temperature. tau = base + (mean(w) - w) * beta, w = (1 - cos(S, T))^gamma."""

    def flsw_temperature_scheduler(logits_S, logits_T, base_temperature):
        with torch.no_grad():
            v = logits_S / (logits_S.norm(dim=-1, keepdim=True) + eps)
            t = logits_T / (logits_T.norm(dim=-1, keepdim=True) + eps)
            w = (1 - (v * t).sum(dim=-1)).pow(gamma)
            return base_temperature + (w.mean() - w) * beta

    return flsw_temperature_scheduler


def cwsm_temperature_scheduler_builder(beta):
    """Confidence-weighted (arXiv:1911.07471): examples where the student is unsure get a lower
    temperature. tau = base + (mean(w) - w) * beta, w = 1 / (max softmax(S) + 1e-3)."""

    def cwsm_temperature_scheduler(logits_S, logits_T, base_temperature):
        with torch.no_grad():
            w = 1 / (torch.softmax(logits_S, dim=-1).max(dim=-1).values + 1e-3)
            return base_temperature + (w.mean() - w) * beta

    return cwsm_temperature_scheduler


def linear_decay_weight_scheduler(step, total_steps):
    return 1 - step / total_steps


def linear_growth_weight_scheduler(step, total_steps):
    return step / total_steps


# 'constant' is used as it is; 'flsw' and 'cwsm' are builders: ['flsw', beta, gamma], ['cwsm', beta].
TEMPERATURE_SCHEDULER = {
    "constant": constant_temperature_scheduler,
    "flsw": flsw_temperature_scheduler_builder,
    "cwsm": cwsm_temperature_scheduler_builder,
}
TEMPERATURE_SCHEDULER_BUILDERS = {"flsw", "cwsm"}

WEIGHT_SCHEDULER = {
    "linear_decay": linear_decay_weight_scheduler,
    "linear_growth": linear_growth_weight_scheduler,
}
