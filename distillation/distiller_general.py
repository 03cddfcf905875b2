"""TextBrewer alias: the module path `textbrewer.distiller_general` (code in distillers.py):
GeneralDistiller."""

from .distillers import GeneralDistiller

__all__ = ["GeneralDistiller"]
