"""TextBrewer's `textbrewer.distiller_multitask`: MultiTaskDistiller (defined in distillation.distillers)."""
from .distillers import MultiTaskDistiller

__all__ = ["MultiTaskDistiller"]
