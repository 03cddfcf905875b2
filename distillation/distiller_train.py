"""TextBrewer alias: the module path `textbrewer.distiller_train` (code in distillers.py):
BasicTrainer."""

from .distillers import BasicTrainer

__all__ = ["BasicTrainer"]
