"""The names adaptors may use, and `register_new` to add losses, projections and schedulers."""

from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP, PAIR_LOSSES
from .projections import PROJ_MAP
from .schedulers import TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER

# TextBrewer's two features, then this project's: a layer's query, key and value vectors
# ('relation', for relation_kl) and its pre-softmax attention scores ('attention_scores').
FEATURES = ["hidden", "attention", "relation", "attention_scores"]
ADAPTOR_KEYS = ["logits", "logits_mask", "losses", "inputs_mask", "labels"] + FEATURES

_MAPS = {
    "KD_LOSS_MAP": KD_LOSS_MAP,
    "MATCH_LOSS_MAP": MATCH_LOSS_MAP,
    "PROJ_MAP": PROJ_MAP,
    "TEMPERATURE_SCHEDULER": TEMPERATURE_SCHEDULER,
    "WEIGHT_SCHEDULER": WEIGHT_SCHEDULER,
}
# TextBrewer 0.2.1's own names for the maps (textbrewer.presets.MAPS) are accepted too.
_TEXTBREWER_NAMES = {
    "kd_loss": "KD_LOSS_MAP",
    "match_Loss": "MATCH_LOSS_MAP",
    "projection": "PROJ_MAP",
    "temperature_scheduler": "TEMPERATURE_SCHEDULER",
    "weight_scheduler": "WEIGHT_SCHEDULER",
}


def register_new(map_name, name, func, pair=False):
    """Add `func` under `name` to one of the maps, e.g. register_new('MATCH_LOSS_MAP', 'l1', l1).

    pair=True (MATCH_LOSS_MAP only) registers a pair loss like 'mmd': its matches give layer_S and
    layer_T as lists of two layers, and it receives two features per side.
    A temperature scheduler given in a config as [name, arg, ...] (or [name, {kwargs}]) is a
    builder: it is called once with those arguments and must return the scheduler; given as a
    bare name it is the scheduler itself.
    """
    map_name = _TEXTBREWER_NAMES.get(map_name, map_name)
    if map_name not in _MAPS:
        raise ValueError(f"register_new: unknown map {map_name!r}; known: {', '.join(_MAPS)}")
    if not callable(func):
        raise TypeError(f"register_new: {name!r} must be callable, got {func!r}")
    if pair and map_name != "MATCH_LOSS_MAP":
        raise ValueError(f"register_new: pair=True is for MATCH_LOSS_MAP, not {map_name}")
    _MAPS[map_name][name] = func
    if map_name == "MATCH_LOSS_MAP":
        (PAIR_LOSSES.add if pair else PAIR_LOSSES.discard)(name)
