"""Knowledge distillation for PyTorch models with TextBrewer 0.2.1's public API.

    from distillation import GeneralDistiller, TrainingConfig, DistillationConfig

TextBrewer's module paths (distillation.distiller_utils, distillation.utils, ...) re-export
the same objects for code written against them.
"""
from . import data_utils, utils  # textbrewer.utils and textbrewer.data_utils, as attributes
from .configs import DistillationConfig, TrainingConfig
from .distillers import (BasicDistiller, BasicTrainer, GeneralDistiller, MultiTaskDistiller,
                         MultiTeacherDistiller)
from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP
from .projections import PROJ_MAP
from .registry import ADAPTOR_KEYS, FEATURES, register_new
from .schedulers import TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER

# TextBrewer's map from short names to distiller classes
Distillers = {
    "Basic": BasicDistiller,
    "General": GeneralDistiller,
    "MultiTeacher": MultiTeacherDistiller,
    "MultiTask": MultiTaskDistiller,
    "Train": BasicTrainer,
}

__all__ = ["TrainingConfig", "DistillationConfig", "BasicTrainer", "BasicDistiller",
           "GeneralDistiller", "MultiTeacherDistiller", "MultiTaskDistiller", "Distillers",
           "KD_LOSS_MAP", "MATCH_LOSS_MAP", "PROJ_MAP", "TEMPERATURE_SCHEDULER", "WEIGHT_SCHEDULER",
           "FEATURES", "ADAPTOR_KEYS", "register_new", "utils", "data_utils"]
