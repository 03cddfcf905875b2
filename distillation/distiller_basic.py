"""TextBrewer alias: the module path `textbrewer.distiller_basic` (code in distillers.py):
BasicDistiller."""

from .distillers import BasicDistiller

__all__ = ["BasicDistiller"]
