"""TextBrewer's `textbrewer.distiller_basic`: BasicDistiller (defined in distillation.distillers)."""
from .distillers import BasicDistiller

__all__ = ["BasicDistiller"]
