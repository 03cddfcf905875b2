"""TextBrewer alias: `textbrewer.utils`, from model_summary.py, projections.py, task_sampling.py:
display_parameters, LayerNode, cycle, initializer_builder."""

from .model_summary import LayerNode, display_parameters
from .projections import initializer_builder
from .task_sampling import cycle

__all__ = ["LayerNode", "display_parameters", "cycle", "initializer_builder"]
