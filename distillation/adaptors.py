"""Between the models and the losses: calling a model on a batch, and checking adaptor outputs.

An adaptor is a function adaptor(batch, model_outputs) -> dict whose keys are among ADAPTOR_KEYS:
  logits       (batch, num_classes), or a list of such tensors (several heads)
  logits_mask  masks selecting rows of the logits (sequence labelling), one per logits tensor
  losses       the model's own loss(es): the hard-label term
  labels       gold labels (used by probability_shift)
  inputs_mask  (batch, length) 1 for real tokens: masks the intermediate losses
  hidden       list of hidden states (batch, length, hidden), index 0 the embeddings
  attention    list of attention maps (batch, heads, length, length)
"""
from collections.abc import Mapping

import torch

from .registry import ADAPTOR_KEYS

LIST_KEYS = ("logits", "logits_mask", "losses", "labels")  # a single tensor means a list of one


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def post_adaptor(results):
    """Check the keys of an adaptor's dict and turn the list-valued entries into lists."""
    if not isinstance(results, Mapping):
        raise TypeError(f"an adaptor must return a dict, got {type(results).__name__}")
    unknown = [key for key in results if key not in ADAPTOR_KEYS]
    if unknown:
        raise ValueError(f"adaptor returned unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(ADAPTOR_KEYS)}")
    return {key: as_list(value) if key in LIST_KEYS else value for key, value in results.items()}


def move_to_device(batch, device):
    """Tensors of a Mapping, tuple or list batch moved to the device; other items as they are."""
    def move(item):
        return item.to(device, non_blocking=True) if isinstance(item, torch.Tensor) else item
    if isinstance(batch, Mapping):
        return {key: move(value) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move(item) for item in batch)
    return move(batch)


def call_model(model, batch, args):
    """model(**batch) for a Mapping (dict, BatchEncoding), model(*batch) for a tuple or list."""
    if isinstance(batch, Mapping):
        return model(**batch, **args)
    if isinstance(batch, (tuple, list)):
        return model(*batch, **args)
    return model(batch, **args)
