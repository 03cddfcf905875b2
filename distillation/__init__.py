"""Knowledge distillation for PyTorch models with TextBrewer 0.2.1's public API.

    from distillation import GeneralDistiller, TrainingConfig, DistillationConfig

TextBrewer's module paths (distillation.distiller_utils, distillation.utils, ...) re-export
the same objects for code written against them (README.md lists them). Beyond TextBrewer's API,
the names below "the run's files and state" are the toolbox the example builds on.
"""

from . import data_utils, utils  # textbrewer.utils and textbrewer.data_utils, as attributes
from .adaptors import move_to_device
from .checkpoint_writer import CheckpointWriteError
from .configs import DistillationConfig, IntermediateMatch, TrainingConfig
from .distillers import (
    BasicDistiller,
    BasicTrainer,
    GeneralDistiller,
    MultiTaskDistiller,
    MultiTeacherDistiller,
)

# The run's files and state: atomic writes, safe loading, checkpoint names, resume, the logit cache.
from .io import atomic_path, atomic_torch_save, atomic_write_text, file_sha256, safe_torch_load
from .logit_cache import EXAMPLE_INDEX_KEY
from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP
from .projections import PROJ_MAP
from .registry import ADAPTOR_KEYS, FEATURES, register_new
from .resume import TrainingInterrupted, latest_state
from .run_files import checkpoint_path, checkpoint_steps
from .schedulers import TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER

# TextBrewer's map from short names to distiller classes
Distillers = {
    "Basic": BasicDistiller,
    "General": GeneralDistiller,
    "MultiTeacher": MultiTeacherDistiller,
    "MultiTask": MultiTaskDistiller,
    "Train": BasicTrainer,
}

__all__ = [
    "TrainingConfig",
    "DistillationConfig",
    "BasicTrainer",
    "BasicDistiller",
    "GeneralDistiller",
    "MultiTeacherDistiller",
    "MultiTaskDistiller",
    "Distillers",
    "KD_LOSS_MAP",
    "MATCH_LOSS_MAP",
    "PROJ_MAP",
    "TEMPERATURE_SCHEDULER",
    "WEIGHT_SCHEDULER",
    "FEATURES",
    "ADAPTOR_KEYS",
    "register_new",
    "utils",
    "data_utils",
    # beyond TextBrewer's API
    "IntermediateMatch",
    "move_to_device",
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_text",
    "file_sha256",
    "safe_torch_load",
    "EXAMPLE_INDEX_KEY",
    "TrainingInterrupted",
    "CheckpointWriteError",
    "latest_state",
    "checkpoint_path",
    "checkpoint_steps",
]
