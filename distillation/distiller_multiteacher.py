"""TextBrewer alias: the module path `textbrewer.distiller_multiteacher` (code in distillers.py):
MultiTeacherDistiller."""

from .distillers import MultiTeacherDistiller

__all__ = ["MultiTeacherDistiller"]
