"""The names adaptors may use, and `register_new` to add losses, projections and schedulers."""
from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP
from .projections import PROJ_MAP
from .schedulers import TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER

FEATURES = ["hidden", "attention"]
ADAPTOR_KEYS = ["logits", "logits_mask", "losses", "inputs_mask", "labels"] + FEATURES

_MAPS = {
    "KD_LOSS_MAP": KD_LOSS_MAP,
    "MATCH_LOSS_MAP": MATCH_LOSS_MAP,
    "PROJ_MAP": PROJ_MAP,
    "TEMPERATURE_SCHEDULER": TEMPERATURE_SCHEDULER,
    "WEIGHT_SCHEDULER": WEIGHT_SCHEDULER,
}


def register_new(map_name, name, func):
    """Add `func` under `name` to one of the maps, e.g. register_new('MATCH_LOSS_MAP', 'l1', l1)."""
    if map_name not in _MAPS:
        raise ValueError(f"register_new: unknown map {map_name!r}; known: {', '.join(_MAPS)}")
    _MAPS[map_name][name] = func
