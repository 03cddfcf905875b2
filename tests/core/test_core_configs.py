"""DistillationConfig's schedules as the distillers use them (weights_at, temperature_for), the
match checks tests/test_configs.py leaves out, and register_new feeding each kind of map."""
import copy
import math

import pytest
import torch

from distillation import (PROJ_MAP, TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER, DistillationConfig,
                          TrainingConfig, register_new)


def match(**changes):
    settings = {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
    settings.update(changes)
    return settings


def public_settings(config):
    return {key: copy.deepcopy(value) for key, value in vars(config).items() if not key.startswith("_")}


# ----- weights_at ------------------------------------------------------------------------------

def test_weights_without_schedules_are_the_base_weights():
    config = DistillationConfig(kd_loss_weight=0.7, hard_label_weight=0.3)
    assert config.weights_at(0, 10) == (0.7, 0.3)
    assert config.weights_at(9, 10) == (0.7, 0.3)


def test_weights_at_follows_the_linear_schedules_and_leaves_the_config_alone():
    config = DistillationConfig(kd_loss_weight=2.0, kd_loss_weight_scheduler="linear_decay",
                                hard_label_weight=0.5, hard_label_weight_scheduler="linear_growth")
    before = public_settings(config)
    # kd: 2 * (1 - step / total); hard: 0.5 * step / total.
    for step, kd, hard in [(0, 2.0, 0.0), (25, 1.5, 0.125), (50, 1.0, 0.25), (100, 0.0, 0.5)]:
        assert config.weights_at(step, 100) == pytest.approx((kd, hard))
    assert public_settings(config) == before


# ----- temperature_for ---------------------------------------------------------------------------

def test_temperature_without_a_schedule_is_the_base_temperature():
    logits = torch.randn(3, 4)
    assert DistillationConfig(temperature=8).temperature_for(logits, logits) == 8
    assert DistillationConfig(temperature=8, temperature_scheduler="constant").temperature_for(logits, logits) == 8


def test_flsw_lowers_the_temperature_where_student_and_teacher_disagree():
    # Example 0: same direction (cosine 1, weight 0); example 1: orthogonal (cosine 0, weight 1).
    # tau_b = 4 + (mean(w) - w_b) * beta with beta = 2: 4 + 0.5 * 2 = 5 and 4 - 0.5 * 2 = 3.
    logits_S = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    logits_T = torch.tensor([[1.0, 0.0], [5.0, 0.0]])
    config = DistillationConfig(temperature=4, temperature_scheduler=["flsw", 2, 2])
    assert config.temperature_for(logits_S, logits_T).tolist() == pytest.approx([5.0, 3.0], abs=1e-3)


def test_cwsm_lowers_the_temperature_where_the_student_is_unsure():
    # max softmax: 1/2 for [0, 0], 3/4 for [ln 3, 0]; w = 1 / (max + 1e-3).
    logits_S = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    w = [1 / (0.5 + 1e-3), 1 / (0.75 + 1e-3)]
    expected = [4 + ((w[0] + w[1]) / 2 - w_b) * 3 for w_b in w]
    config = DistillationConfig(temperature=4, temperature_scheduler=["cwsm", 3])
    tau = config.temperature_for(logits_S, torch.zeros(2, 2))
    assert tau.tolist() == pytest.approx(expected, rel=1e-5)
    assert tau[0] < 4 < tau[1]


def test_unknown_schedulers_list_every_known_name():
    with pytest.raises(ValueError) as error:
        DistillationConfig(temperature_scheduler="cosine")
    assert all(name in str(error.value) for name in ["'cosine'", "none", *TEMPERATURE_SCHEDULER])
    with pytest.raises(ValueError) as error:
        DistillationConfig(kd_loss_weight_scheduler="step")
    assert all(name in str(error.value) for name in ["kd_loss_weight_scheduler", "none", *WEIGHT_SCHEDULER])


# ----- matches -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, words", [
    ("hidden_mse", ["intermediate_matches[0]", "dict"]),
    (match(layer_T=[1, 2], layer_S=1), ["intermediate_matches[0]", "layer_T", "layer_S"]),
    (match(loss="mmd", layer_T=[0, 1, 2], layer_S=[0, 1, 2]), ["intermediate_matches[0]", "layer_T", "[0, 1, 2]"]),
    (match(loss="mmd"), ["intermediate_matches[0]", "'mmd'", "layer_T"]),
    (match(layer_S=-1), ["intermediate_matches[0]", "layer_S"]),
    (match(layer_S=True), ["intermediate_matches[0]", "layer_S"]),
    (match(weight=True), ["intermediate_matches[0]", "weight"]),
    (match(proj=["linear", 0, 32]), ["intermediate_matches[0]", "proj"]),
])
def test_more_bad_matches_name_their_index_and_key(bad, words):
    with pytest.raises(ValueError) as error:
        DistillationConfig(intermediate_matches=[bad])
    for word in words:
        assert word in str(error.value)


def test_default_reprs_are_readable():
    lines = [line.strip() for line in repr(DistillationConfig()).splitlines()]
    assert lines[0] == "DistillationConfig(" and lines[-1] == ")"
    assert {"temperature: 4", "kd_loss_type: 'ce'", "intermediate_matches: []"} <= set(lines)
    assert "ckpt_frequency: 1" in repr(TrainingConfig(device="cpu"))


# ----- register_new feeds every kind of map --------------------------------------------------------

@pytest.fixture
def registered():
    """Registers through register_new and removes the names afterwards."""
    added = []

    def add(map_name, name, func, target):
        register_new(map_name, name, func)
        added.append((target, name))
    yield add
    for target, name in added:
        del target[name]


def test_a_registered_weight_scheduler_is_used_by_weights_at(registered):
    registered("WEIGHT_SCHEDULER", "halfway_test", lambda step, total: 1.0 if step < total / 2 else 0.0,
               WEIGHT_SCHEDULER)
    config = DistillationConfig(kd_loss_weight=3, kd_loss_weight_scheduler="halfway_test")
    assert config.weights_at(4, 10) == (3.0, 0)
    assert config.weights_at(5, 10) == (0.0, 0)


def test_a_registered_temperature_scheduler_is_used_by_temperature_for(registered):
    registered("TEMPERATURE_SCHEDULER", "double_test", lambda S, T, base: 2 * base, TEMPERATURE_SCHEDULER)
    config = DistillationConfig(temperature=3, temperature_scheduler="double_test")
    assert config.temperature_for(torch.zeros(1, 2), torch.zeros(1, 2)) == 6


def test_a_registered_projection_is_accepted_in_a_match(registered):
    registered("PROJ_MAP", "bias_free_test", lambda dim_in, dim_out: torch.nn.Linear(dim_in, dim_out, bias=False),
               PROJ_MAP)
    config = DistillationConfig(intermediate_matches=[match(proj=["bias_free_test", 16, 32])])
    assert config.intermediate_matches[0].proj == ["bias_free_test", 16, 32]


def test_a_registered_temperature_scheduler_builder_receives_its_arguments(registered):
    """A scheduler that takes arguments is a builder, given as [name, *args] or [name, {kwargs}]."""
    built = []

    def scaled_builder(factor, offset=0.0):
        built.append((factor, offset))
        return lambda logits_S, logits_T, base: factor * base + offset

    registered("TEMPERATURE_SCHEDULER", "scaled_test", scaled_builder, TEMPERATURE_SCHEDULER)
    logits = torch.zeros(1, 2)
    assert DistillationConfig(temperature=3, temperature_scheduler=["scaled_test", 5]).temperature_for(logits, logits) == 15
    assert DistillationConfig(temperature=3, temperature_scheduler=["scaled_test", 5, 1.5]).temperature_for(logits, logits) == 16.5
    config = DistillationConfig(temperature=2, temperature_scheduler=["scaled_test", {"factor": 4, "offset": 1}])
    assert config.temperature_for(logits, logits) == 9
    assert built == [(5, 0.0), (5, 1.5), (4, 1)]  # built once per config, with its arguments
    with pytest.raises(ValueError, match=r"temperature_scheduler \['scaled_test', 1, 2, 3\]: the builder 'scaled_test'"):
        DistillationConfig(temperature_scheduler=["scaled_test", 1, 2, 3])


def test_a_registered_pair_loss_takes_pairs_of_layers(registered):
    from distillation import MATCH_LOSS_MAP, GeneralDistiller
    from distillation.losses import PAIR_LOSSES
    calls = []

    def pair_distance(features_S, features_T, mask=None):
        calls.append((len(features_S), len(features_T)))
        return sum((s.mean() - t.mean()) ** 2 for s, t in zip(features_S, features_T))

    registered("MATCH_LOSS_MAP", "pair_test", pair_distance, MATCH_LOSS_MAP)
    with pytest.raises(ValueError, match=r"loss 'pair_test' takes layer indices"):
        DistillationConfig(intermediate_matches=[match(loss="pair_test", layer_T=[1, 2], layer_S=[0, 1])])
    register_new("MATCH_LOSS_MAP", "pair_test", pair_distance, pair=True)
    try:
        config = DistillationConfig(intermediate_matches=[match(loss="pair_test", layer_T=[1, 2], layer_S=[0, 1])])
        with pytest.raises(ValueError, match=r"loss 'pair_test' takes lists of two layer indices"):
            DistillationConfig(intermediate_matches=[match(loss="pair_test")])
        # GeneralDistiller hands the loss both layers of each side.
        model = torch.nn.Linear(2, 2)
        distiller = GeneralDistiller(TrainingConfig(device="cpu"), config, model, torch.nn.Linear(2, 2),
                                     None, None)
        hidden_S = [torch.full((1, 2, 4), float(i)) for i in range(3)]
        hidden_T = [torch.full((1, 2, 4), 10.0 * i) for i in range(3)]
        total, losses = distiller.compute_loss({"hidden": hidden_S}, {"hidden": hidden_T})
        assert calls == [(2, 2)]
        assert total.item() == pytest.approx((0 - 10) ** 2 + (1 - 20) ** 2)
        assert "unweighted_hidden_pair_test_0-1_1-2" in losses
    finally:
        PAIR_LOSSES.discard("pair_test")
    # Registered again without pair=True, the name is a single-layer loss once more.
    register_new("MATCH_LOSS_MAP", "pair_test", pair_distance)
    assert "pair_test" not in PAIR_LOSSES


def test_register_new_takes_textbrewers_map_names_and_callables_only(registered):
    from distillation import MATCH_LOSS_MAP
    registered("match_Loss", "textbrewer_name_test", lambda S, T, mask=None: (S - T).abs().mean(), MATCH_LOSS_MAP)
    assert "textbrewer_name_test" in MATCH_LOSS_MAP
    registered("temperature_scheduler", "tb_temperature_test", lambda S, T, base: base, TEMPERATURE_SCHEDULER)
    assert "tb_temperature_test" in TEMPERATURE_SCHEDULER
    with pytest.raises(TypeError, match="must be callable"):
        register_new("MATCH_LOSS_MAP", "not_callable_test", 3)
    with pytest.raises(ValueError, match="pair=True is for MATCH_LOSS_MAP"):
        register_new("KD_LOSS_MAP", "pair_kd_test", lambda S, T, t: 0, pair=True)
    assert "not_callable_test" not in MATCH_LOSS_MAP


def test_local_rank_is_accepted_and_ignored_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="distillation.configs"):
        default = TrainingConfig(device="cpu")
    assert not [r for r in caplog.records if "local_rank" in r.getMessage()]
    with caplog.at_level("WARNING", logger="distillation.configs"):
        config = TrainingConfig(device="cpu", local_rank=0)
    assert any("local_rank=0 is accepted for compatibility and ignored" in r.getMessage()
               for r in caplog.records)
    assert config.local_rank == 0
    # Nothing else follows from it: no data parallelism, the same device and settings.
    assert config.data_parallel is False and config.device == default.device
    assert {k: v for k, v in vars(config).items() if k != "local_rank"} == \
        {k: v for k, v in vars(default).items() if k != "local_rank"}
