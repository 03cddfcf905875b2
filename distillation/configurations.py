"""TextBrewer alias: the module path `textbrewer.configurations` (code in configs.py):
TrainingConfig, DistillationConfig, IntermediateMatch."""

from .configs import DistillationConfig, IntermediateMatch, TrainingConfig

__all__ = ["TrainingConfig", "DistillationConfig", "IntermediateMatch"]
