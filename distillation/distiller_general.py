"""TextBrewer's `textbrewer.distiller_general`: GeneralDistiller (defined in distillation.distillers)."""
from .distillers import GeneralDistiller

__all__ = ["GeneralDistiller"]
