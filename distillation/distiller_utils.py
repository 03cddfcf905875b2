"""TextBrewer alias: `textbrewer.distiller_utils`, from adaptors.py, distillers.py, trainer.py:
the module custom distillers star-import.

`from distillation.distiller_utils import *` gives what TextBrewer's gives such code: the
helpers get_outputs_from_batch, post_adaptor, select_logits_with_mask, probability_shift_,
move_to_device, auto_forward, the maps and configs, AbstractDistiller, a logger, and the
modules and typing names it happens to re-export (torch, nn, np, os, json, random, logging,
tqdm, OrderedDict, abc, Optional, Dict, List, Union).
"""

import json
import logging
import os
import random
from collections import OrderedDict, abc
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .adaptors import forward_models as auto_forward
from .adaptors import get_outputs_from_batch, move_to_device, post_adaptor, select_logits_with_mask
from .compatibility import is_apex_available, mask_dtype
from .configs import DistillationConfig, TrainingConfig
from .distillers import probability_shift_
from .presets import (
    ADAPTOR_KEYS,
    FEATURES,
    KD_LOSS_MAP,
    MATCH_LOSS_MAP,
    PROJ_MAP,
    TEMPERATURE_SCHEDULER,
    WEIGHT_SCHEDULER,
    register_new,
)
from .task_sampling import cycle
from .trainer import AbstractDistiller

logger = logging.getLogger("distillation")

__all__ = [
    "get_outputs_from_batch",
    "auto_forward",
    "post_adaptor",
    "select_logits_with_mask",
    "probability_shift_",
    "move_to_device",
    "cycle",
    "AbstractDistiller",
    "TrainingConfig",
    "DistillationConfig",
    "FEATURES",
    "ADAPTOR_KEYS",
    "KD_LOSS_MAP",
    "MATCH_LOSS_MAP",
    "PROJ_MAP",
    "TEMPERATURE_SCHEDULER",
    "WEIGHT_SCHEDULER",
    "register_new",
    "mask_dtype",
    "is_apex_available",
    "logger",
    "torch",
    "nn",
    "np",
    "os",
    "json",
    "random",
    "logging",
    "tqdm",
    "OrderedDict",
    "abc",
    "Optional",
    "Dict",
    "List",
    "Union",
]
