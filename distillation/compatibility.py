"""TextBrewer alias: the module path `textbrewer.compatibility` (two small definitions of its own):
the dtype of boolean masks, and whether apex is there."""

import importlib.util

import torch

mask_dtype = torch.bool


def is_apex_available():
    """Whether NVIDIA apex is installed (this package uses torch.amp and never imports it)."""
    return importlib.util.find_spec("apex") is not None


__all__ = ["mask_dtype", "is_apex_available"]
