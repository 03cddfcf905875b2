"""TextBrewer's `textbrewer.configurations`: TrainingConfig, DistillationConfig, IntermediateMatch."""
from .configs import DistillationConfig, IntermediateMatch, TrainingConfig

__all__ = ["TrainingConfig", "DistillationConfig", "IntermediateMatch"]
