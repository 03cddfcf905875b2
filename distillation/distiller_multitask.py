"""TextBrewer alias: the module path `textbrewer.distiller_multitask` (code in distillers.py):
MultiTaskDistiller."""

from .distillers import MultiTaskDistiller

__all__ = ["MultiTaskDistiller"]
