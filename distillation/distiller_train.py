"""TextBrewer's `textbrewer.distiller_train`: BasicTrainer (defined in distillation.distillers)."""
from .distillers import BasicTrainer

__all__ = ["BasicTrainer"]
