"""TextBrewer alias: `textbrewer.presets`, from losses.py, projections.py, schedulers.py, registry.py:
the adaptor keys, the maps of losses, projections and
schedulers, and register_new."""

from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP
from .projections import PROJ_MAP
from .registry import ADAPTOR_KEYS, FEATURES, register_new
from .schedulers import TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER

__all__ = [
    "FEATURES",
    "ADAPTOR_KEYS",
    "KD_LOSS_MAP",
    "MATCH_LOSS_MAP",
    "PROJ_MAP",
    "TEMPERATURE_SCHEDULER",
    "WEIGHT_SCHEDULER",
    "register_new",
]
