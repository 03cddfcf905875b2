"""TextBrewer's `textbrewer.distiller_multiteacher`: MultiTeacherDistiller (defined in distillation.distillers)."""
from .distillers import MultiTeacherDistiller

__all__ = ["MultiTeacherDistiller"]
