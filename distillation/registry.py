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
    # TextBrewer's names for the same maps, spelled as it spells them
    "kd_loss": KD_LOSS_MAP,
    "match_Loss": MATCH_LOSS_MAP,
    "projection": PROJ_MAP,
    "weight_scheduler": WEIGHT_SCHEDULER,
    "temperature_scheduler": TEMPERATURE_SCHEDULER,
}


def register_new(map_name, name, func):
    """Add `func` under `name` to one of the maps, e.g. register_new('MATCH_LOSS_MAP', 'l1', l1)."""
    if map_name not in _MAPS:
        raise ValueError(f"register_new: unknown map {map_name!r}; known: {', '.join(_MAPS)}")
    if not callable(func):
        raise TypeError(f"register_new: {name!r} must be callable, got {func!r}")
    _MAPS[map_name][name] = func
