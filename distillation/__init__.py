"""Knowledge distillation for PyTorch models with TextBrewer 0.2.1's public API.

    from distillation import GeneralDistiller, TrainingConfig, DistillationConfig
"""
from .configs import DistillationConfig, TrainingConfig
from .distillers import BasicDistiller, BasicTrainer, GeneralDistiller, MultiTeacherDistiller
from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP
from .projections import PROJ_MAP
from .registry import ADAPTOR_KEYS, FEATURES, register_new
from .schedulers import TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER

__all__ = ["TrainingConfig", "DistillationConfig", "BasicTrainer", "BasicDistiller",
           "GeneralDistiller", "MultiTeacherDistiller", "KD_LOSS_MAP", "MATCH_LOSS_MAP", "PROJ_MAP",
           "TEMPERATURE_SCHEDULER", "WEIGHT_SCHEDULER", "FEATURES", "ADAPTOR_KEYS", "register_new"]
