import json

import pytest

from matches import LAYER_MAPS, PRESETS, fit_matches, read_matches, uniform_layer_map
from pipeline.student_init import teacher_layer_map


def test_one_layer_map_for_the_presets_and_the_student_init():
    """The map is written once (uniform_layer_map); the presets' table and student_init.py's
    teacher layers are both read from it."""
    assert LAYER_MAPS["L4"] == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]  # the original's L4
    assert uniform_layer_map(4, 6) == [(0, 0), (1, 2), (2, 3), (3, 5), (4, 6)]
    assert teacher_layer_map(4, 6) == [1, 2, 4, 5]  # encoder.layer indices: one less


def test_t4_tiny_preset_maps_every_third_teacher_layer_with_projections():
    matches = fit_matches(read_matches(["L4t_hidden_mse"]), 312, 768, 4, 12)
    assert [(m.layer_S, m.layer_T) for m in matches] == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert all(m.proj == ["linear", 312, 768] for m in matches)


def test_mmd_preset_pairs_each_layer_with_itself_and_needs_no_projection():
    matches = fit_matches(read_matches(["L4_hidden_smmd"]), 312, 768, 4, 12)
    assert matches[2].layer_S == [2, 2] and matches[2].layer_T == [6, 6]
    assert all(m.proj is None for m in matches)


def test_equal_hidden_sizes_get_no_projection():
    assert all(m.proj is None for m in fit_matches(read_matches(["L6_hidden_mse"]), 768, 768, 6, 12))


def test_attention_presets_index_layers_from_zero():
    matches = fit_matches(read_matches(["L3_attention_mse"]), 384, 768, 3, 12)
    assert [(m.layer_S, m.layer_T) for m in matches] == [(0, 3), (1, 7), (2, 11)]
    assert {m.feature for m in matches} == {"attention"}


def test_presets_of_the_original_students_exist():
    for name in [
        "L3_hidden_mse",
        "L4t_hidden_mse",
        "L4_hidden_smmd",
        "L6_hidden_smmd",
        "L4_attention_ce",
        "L6_attention_mse",
    ]:
        assert name in PRESETS


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'L4_hiden_mse'.*L4t_hidden_mse"):
        read_matches(["L4_hiden_mse"])


def test_layer_out_of_range_names_the_match():
    with pytest.raises(ValueError, match=r"matches\[5\]: layer_S=5 is out of range"):
        fit_matches(read_matches(["L6_hidden_mse"]), 312, 768, 4, 12)
    with pytest.raises(ValueError, match=r"layer_T=12 is out of range"):
        fit_matches(
            [{"layer_S": 0, "layer_T": 12, "feature": "attention", "loss": "attention_mse", "weight": 1}],
            32,
            32,
            2,
            12,
        )


def test_matches_from_a_json_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps([{"layer_S": 2, "layer_T": 6, "feature": "hidden", "loss": "cos", "weight": 0.5}])
    )
    [match] = fit_matches(read_matches([str(path)]), 32, 64, 2, 6, weight=3)
    assert match.proj == ["linear", 32, 64] and match.weight == 1.5
    path.write_text('{"layer_S": 2}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_matches([str(path)])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_matches([str(tmp_path / "missing.json")])


def test_a_projection_that_does_not_fit_the_models():
    bad = [
        {
            "layer_S": 1,
            "layer_T": 3,
            "feature": "hidden",
            "loss": "hidden_mse",
            "weight": 1,
            "proj": ["linear", 312, 1024],
        }
    ]
    with pytest.raises(ValueError, match=r"matches\[0\]: proj linear 312 -> 1024 does not fit"):
        fit_matches(bad, 312, 768, 4, 12)


def test_presets_and_json_files_mix_in_their_order(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(PRESETS["L4t_hidden_mse"][:2]))
    matches = read_matches([str(path), "L4_relation_last", str(path)])
    assert (
        matches == PRESETS["L4t_hidden_mse"][:2] + PRESETS["L4_relation_last"] + PRESETS["L4t_hidden_mse"][:2]
    )
    with pytest.raises(ValueError, match="unknown preset 'L4_relation'"):
        read_matches([str(path), "L4_relation"])
