"""Named intermediate-match presets for `--matches`, and loading of matches from a JSON file.

A preset names a layer map and a loss; the projection sizes are filled in from the model
configs, so the same preset serves a bert-base teacher (hidden 768) and any other teacher.

Layer indices follow the adaptor's lists:
- 'hidden': index 0 is the embedding output, index k the output of layer k (0..num_layers);
- 'attention', 'relation', 'attention_scores': index k-1 holds layer k's attention
  probabilities, query/key/value vectors, pre-softmax scores (0..num_layers-1).

Beyond the original's presets: MiniLMv2's relations of the last layers (L{n}_relation_last),
and TinyBERT's attention scores on the uniform layer map (L{n}_att_score_mse); the names ending
in _from6 are for a 6-layer teacher (MiniLM-L6), the others for a 12-layer one (docs/relations.md).

Names keep the original example's spelling: L3 / L4 / L6 are students of 3, 4 and 6 layers
under a 12-layer teacher, 't' marks the tiny student whose hidden size differs from the teacher's
(the projection is added whenever the sizes differ, so L4 and L4t differ only in name).
"""

import json
import math
import os

from distillation import IntermediateMatch
from distillation.relation_losses import RELATION_HEADS


def uniform_layer_map(num_layers_S, num_layers_T):
    """[(student layer, teacher layer)] from the embeddings (0, 0) to the last layers: student
    layer i learns from teacher layer ceil(i * L_T / L_S), uniformly spaced (the map of the
    original's presets, and of pipeline/student_init.py)."""
    return [(i, math.ceil(i * num_layers_T / num_layers_S)) for i in range(num_layers_S + 1)]


# The original's three students under a 12-layer teacher.
LAYER_MAPS = {f"L{depth}": uniform_layer_map(depth, 12) for depth in (3, 4, 6)}
# Losses that compare student and teacher vectors directly need equal sizes, hence a projection.
NEEDS_PROJECTION = {"hidden_mse", "cos", "pkd", "gram", "fsp"}
# Relation heads of the relation presets: MiniLMv2's number for a base-size teacher. They must
# divide both hidden sizes (12 divides 768, 384 and T4-tiny's 312).
PRESET_RELATION_HEADS = 12


def _single(layer_map, loss, feature="hidden"):
    return [{"layer_S": s, "layer_T": t, "feature": feature, "loss": loss, "weight": 1} for s, t in layer_map]


def _self_pairs(layer_map, loss):
    """Pair losses (mmd, gram) on a layer with itself: similarity of tokens within one layer."""
    return [
        {"layer_S": [s, s], "layer_T": [t, t], "feature": "hidden", "loss": loss, "weight": 1}
        for s, t in layer_map
    ]


def _attention(layer_map, loss):
    """Attention maps exist for layers 1..L only; list index k-1 holds layer k."""
    return _single([(s - 1, t - 1) for s, t in layer_map if s > 0], loss, feature="attention")


def _relation_last(num_layers_S, num_layers_T):
    """MiniLMv2: the student's last layer learns the teacher's last layer's Q-Q, K-K and V-V
    relations (index k-1 is layer k, as for attention maps)."""
    return [
        {
            "layer_S": num_layers_S - 1,
            "layer_T": num_layers_T - 1,
            "feature": "relation",
            "loss": "relation_kl",
            "weight": 1,
            "relation_heads": PRESET_RELATION_HEADS,
        }
    ]


def _build_presets():
    presets = {}
    for depth, layer_map in LAYER_MAPS.items():
        presets[f"{depth}_hidden_mse"] = _single(layer_map, "hidden_mse")
        presets[f"{depth}t_hidden_mse"] = _single(layer_map, "hidden_mse")
        presets[f"{depth}_hidden_smmd"] = _self_pairs(layer_map, "mmd")
        presets[f"{depth}t_hidden_sgram"] = _self_pairs(layer_map, "gram")
        for loss in ("attention_mse", "attention_ce", "attention_mse_sum", "attention_ce_mean"):
            presets[f"{depth}_{loss}"] = _attention(layer_map, loss)
    # Beyond the original: relations and pre-softmax scores, under 12- and 6-layer teachers.
    for depth in (3, 4, 6):
        presets[f"L{depth}_relation_last"] = _relation_last(depth, 12)
        presets[f"L{depth}_relation_last_from6"] = _relation_last(depth, 6)
        # TinyBERT's map: student layer m learns from teacher layer m * L_T / L_S (3, 6, 9, 12
        # for 4 from 12), rounded up where the ratio is not whole (2, 3, 5, 6 for 4 from 6).
        presets[f"L{depth}_att_score_mse"] = _scores(uniform_layer_map(depth, 12))
        presets[f"L{depth}_att_score_mse_from6"] = _scores(uniform_layer_map(depth, 6))
    return presets


def _scores(layer_map):
    return _single([(s - 1, t - 1) for s, t in layer_map if s > 0], "att_score_mse", "attention_scores")


PRESETS = _build_presets()


def read_matches(names_or_paths):
    """`--matches` values -> a list of match dicts, in the order given: preset names and paths
    of JSON files (.json) holding lists of matches, which may be mixed (a file of the
    recommended recipe's matches and a relation preset)."""
    names_or_paths = list(names_or_paths or [])
    unknown = [name for name in names_or_paths if not name.endswith(".json") and name not in PRESETS]
    if unknown:
        raise ValueError(
            f"--matches: unknown preset {', '.join(map(repr, unknown))}; "
            f"known presets: {', '.join(sorted(PRESETS))}, "
            "or the path of a .json file holding a list of matches"
        )
    matches = []
    for name in names_or_paths:
        matches += _read_match_file(name) if name.endswith(".json") else [dict(m) for m in PRESETS[name]]
    return matches


def fit_matches(
    matches,
    hidden_size_S,
    hidden_size_T,
    num_layers_S,
    num_layers_T,
    weight=1,
    num_heads_S=None,
    num_heads_T=None,
):
    """The matches as the core's IntermediateMatch objects, each checked once: its format by the
    core (IntermediateMatch.from_dict), its layers against the models' depths and its
    projection against their sizes here. Every weight is multiplied by `weight`.

    A projection ['linear', hidden_size_S, hidden_size_T] is added where the loss compares
    vectors directly, the hidden sizes differ and the match names no projection of its own.
    relation_kl's relation_heads must divide both hidden sizes; att_score_mse needs the same
    number of attention heads on both sides (checked when num_heads_S and num_heads_T are given).
    """
    fitted = []
    for index, raw in enumerate(matches):
        match = IntermediateMatch.from_dict(raw, index)
        _check_layers(match, index, num_layers_S, num_layers_T)
        if match.loss in NEEDS_PROJECTION and match.proj is None and hidden_size_S != hidden_size_T:
            match.proj = ["linear", hidden_size_S, hidden_size_T]
        _check_projection(match, index, hidden_size_S, hidden_size_T)
        _check_heads(match, index, hidden_size_S, hidden_size_T, num_heads_S, num_heads_T)
        match.weight = match.weight * weight
        fitted.append(match)
    return fitted


def _read_match_file(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--matches: file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            matches = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(matches, list) or not all(isinstance(m, dict) for m in matches):
        raise ValueError(
            f"{path}: expected a JSON list of match objects "
            '(e.g. [{"layer_T": 12, "layer_S": 4, "feature": "hidden", '
            '"loss": "hidden_mse", "weight": 1}])'
        )
    return matches


def _check_layers(match, index, num_layers_S, num_layers_T):
    # hidden states: embeddings + one per layer; attention maps: one per layer.
    extra = 1 if match.feature == "hidden" else 0
    for key, num_layers in (("layer_S", num_layers_S), ("layer_T", num_layers_T)):
        value = getattr(match, key)
        for layer in value if isinstance(value, list) else [value]:
            if not 0 <= layer < num_layers + extra:
                raise ValueError(
                    f"matches[{index}]: {key}={value!r} is out of range for a model with "
                    f"{num_layers} layers ({match.feature} indices run from 0 "
                    f"to {num_layers + extra - 1})"
                )


def _check_projection(match, index, hidden_size_S, hidden_size_T):
    proj = match.proj
    if (
        proj is not None
        and match.feature == "hidden"
        and (proj[1], proj[2]) != (hidden_size_S, hidden_size_T)
    ):
        raise ValueError(
            f"matches[{index}]: proj {proj[0]} {proj[1]} -> {proj[2]} does not fit the "
            f"models: student hidden size {hidden_size_S}, teacher {hidden_size_T}"
        )


def _check_heads(match, index, hidden_size_S, hidden_size_T, num_heads_S, num_heads_T):
    if match.loss == "relation_kl":
        heads = match.relation_heads or RELATION_HEADS
        for side, size in (("student", hidden_size_S), ("teacher", hidden_size_T)):
            if size % heads:
                raise ValueError(
                    f"matches[{index}]: relation_heads {heads} does not divide the {side}'s hidden "
                    f"size {size} (student {hidden_size_S}, teacher {hidden_size_T}); set "
                    '"relation_heads" to a common divisor'
                )
    if (
        match.loss == "att_score_mse"
        and None not in (num_heads_S, num_heads_T)
        and num_heads_S != num_heads_T
    ):
        raise ValueError(
            f"matches[{index}]: att_score_mse compares attention scores head by head, but the "
            f"student has {num_heads_S} heads and the teacher {num_heads_T}; use relation_kl "
            "(any head counts) or a student with the teacher's number of heads"
        )
