"""TrainingConfig, DistillationConfig and the named maps: TextBrewer 0.2.1's defaults, clear
errors for bad settings, readable reprs, schedulers that follow their formulas, the schedules as
the distillers use them (weights_at, temperature_for), and register_new feeding each kind of map."""

import copy
import logging
import math

import pytest
import torch

import distillation
from distillation import (
    ADAPTOR_KEYS,
    FEATURES,
    KD_LOSS_MAP,
    MATCH_LOSS_MAP,
    PROJ_MAP,
    TEMPERATURE_SCHEDULER,
    WEIGHT_SCHEDULER,
    DistillationConfig,
    TrainingConfig,
    register_new,
)

EXPORTS = [
    "TrainingConfig",
    "DistillationConfig",
    "BasicTrainer",
    "BasicDistiller",
    "GeneralDistiller",
    "MultiTeacherDistiller",
    "KD_LOSS_MAP",
    "MATCH_LOSS_MAP",
    "PROJ_MAP",
    "TEMPERATURE_SCHEDULER",
    "WEIGHT_SCHEDULER",
    "FEATURES",
    "ADAPTOR_KEYS",
    "register_new",
]


def good_match(**changes):
    match = {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
    match.update(changes)
    return match


def public_settings(config):
    return {key: copy.deepcopy(value) for key, value in vars(config).items() if not key.startswith("_")}


def warnings_about(caplog, text):
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_the_package_exports_textbrewers_names():
    for name in EXPORTS:
        assert hasattr(distillation, name), name
    # TextBrewer's features first, then this project's (a layer's Q/K/V, its pre-softmax scores)
    assert FEATURES == ["hidden", "attention", "relation", "attention_scores"]
    assert ADAPTOR_KEYS == ["logits", "logits_mask", "losses", "inputs_mask", "labels", *FEATURES]


# ----- TrainingConfig ------------------------------------------------------------------------


def test_training_config_defaults(caplog):
    config = TrainingConfig()
    assert (
        config.gradient_accumulation_steps,
        config.ckpt_frequency,
        config.ckpt_epoch_frequency,
        config.ckpt_steps,
        config.log_dir,
        config.output_dir,
    ) == (1, 1, 1, None, None, "./saved_models")
    assert (config.fp16, config.fp16_opt_level, config.data_parallel, config.local_rank) == (
        False,
        "O1",
        False,
        -1,
    )
    assert config.mixed_precision == "no"
    if torch.cuda.is_available():
        assert torch.device(config.device).type == "cuda"
    else:
        assert torch.device(config.device).type == "cpu"
        assert len(warnings_about(caplog, "CUDA")) == 1


def test_creating_a_config_creates_no_directory(tmp_path):
    TrainingConfig(output_dir=str(tmp_path / "out"), log_dir=str(tmp_path / "logs"), device="cpu")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback happens without CUDA only")
def test_fp16_without_cuda_warns_and_stays_in_float32(caplog):
    config = TrainingConfig(fp16=True)
    assert config.mixed_precision == "no"
    assert len(warnings_about(caplog, "fp16")) == 1
    assert TrainingConfig(device="cpu", mixed_precision="fp16").mixed_precision == "no"


def test_bf16_on_the_cpu_only_when_asked_by_name():
    assert TrainingConfig(device="cpu", mixed_precision="bf16").mixed_precision == "bf16"
    assert TrainingConfig(device=torch.device("cpu")).mixed_precision == "no"


def test_mixed_precision_errors():
    with pytest.raises(ValueError, match="fp16"):
        TrainingConfig(device="cpu", fp16=True, mixed_precision="bf16")
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainingConfig(device="cpu", mixed_precision="fp8")


def test_fp16_opt_level_is_accepted_with_a_warning(caplog):
    config = TrainingConfig(device="cpu", fp16_opt_level="O2")
    assert config.fp16_opt_level == "O2"
    assert len(warnings_about(caplog, "O2")) == 1


@pytest.mark.parametrize(
    "key", ["gradient_accumulation_steps", "ckpt_frequency", "ckpt_epoch_frequency", "ckpt_steps"]
)
def test_training_config_rejects_non_positive_counts(key):
    with pytest.raises(ValueError, match=key):
        TrainingConfig(device="cpu", **{key: 0})


def test_training_config_repr_is_one_setting_per_line():
    text = repr(TrainingConfig(device="cpu", gradient_accumulation_steps=4, output_dir="runs/a"))
    lines = [line.strip() for line in text.splitlines()]
    assert "gradient_accumulation_steps: 4" in lines
    assert "output_dir: 'runs/a'" in lines or "output_dir: runs/a" in lines
    assert str(TrainingConfig(device="cpu")).count("\n") >= 10


# ----- DistillationConfig ----------------------------------------------------------------------


def test_distillation_config_defaults():
    config = DistillationConfig()
    assert (
        config.temperature,
        config.temperature_scheduler,
        config.hard_label_weight,
        config.hard_label_weight_scheduler,
        config.kd_loss_type,
        config.kd_loss_weight,
        config.kd_loss_weight_scheduler,
        config.probability_shift,
        config.is_caching_logits,
    ) == (4, None, 0, "none", "ce", 1, "none", False, False)
    assert list(config.intermediate_matches) == []


def test_matches_become_intermediate_match_objects():
    config = DistillationConfig(
        intermediate_matches=[
            good_match(),
            {"layer_T": [0, 2], "layer_S": [0, 1], "feature": "hidden", "loss": "mmd", "weight": 0.5},
            good_match(proj=["linear", 16, 32]),
            good_match(proj=["tanh", 16, 32, {"lr": 1e-3}]),
        ]
    )
    plain, pair, projected, with_options = config.intermediate_matches
    assert (plain.layer_T, plain.layer_S, plain.feature, plain.loss, plain.weight, plain.proj) == (
        2,
        1,
        "hidden",
        "hidden_mse",
        1,
        None,
    )
    assert (pair.layer_T, pair.layer_S, pair.loss, pair.weight) == ([0, 2], [0, 1], "mmd", 0.5)
    assert list(projected.proj[:3]) == ["linear", 16, 32]
    assert with_options.proj_group == {"lr": 1e-3}


@pytest.mark.parametrize(
    "match, words",
    [
        (good_match(loss="hiden_mse"), ["intermediate_matches[1]", "hiden_mse", "hidden_mse"]),
        (good_match(feature="hiden"), ["intermediate_matches[1]", "feature", "hiden"]),
        ({k: v for k, v in good_match().items() if k != "weight"}, ["intermediate_matches[1]", "weight"]),
        ({k: v for k, v in good_match().items() if k != "layer_S"}, ["intermediate_matches[1]", "layer_S"]),
        (good_match(wieght=1), ["intermediate_matches[1]", "wieght"]),
        (good_match(weight="1"), ["intermediate_matches[1]", "weight"]),
        (good_match(layer_T="2"), ["intermediate_matches[1]", "layer_T"]),
        (good_match(layer_T=[1, 2]), ["intermediate_matches[1]", "layer_T"]),
        (good_match(proj=["conv", 16, 32]), ["intermediate_matches[1]", "proj", "conv"]),
        (good_match(proj=["linear", 16]), ["intermediate_matches[1]", "proj"]),
        (good_match(proj=["linear", 16, 32, "fast"]), ["intermediate_matches[1]", "proj"]),
        ("hidden_mse", ["intermediate_matches[1]", "dict"]),
        (good_match(layer_T=[1, 2], layer_S=1), ["intermediate_matches[1]", "layer_T", "layer_S"]),
        (
            good_match(loss="mmd", layer_T=[0, 1, 2], layer_S=[0, 1, 2]),
            ["intermediate_matches[1]", "layer_T", "[0, 1, 2]"],
        ),
        (good_match(loss="mmd"), ["intermediate_matches[1]", "'mmd'", "layer_T"]),
        (good_match(layer_S=-1), ["intermediate_matches[1]", "layer_S"]),
        (good_match(layer_S=True), ["intermediate_matches[1]", "layer_S"]),
        (good_match(weight=True), ["intermediate_matches[1]", "weight"]),
        (good_match(proj=["linear", 0, 32]), ["intermediate_matches[1]", "proj"]),
    ],
)
def test_bad_matches_name_their_index_and_key(match, words):
    with pytest.raises(ValueError) as error:
        DistillationConfig(intermediate_matches=[good_match(), match])
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    "settings, word",
    [
        ({"kd_loss_type": "kl"}, "kd_loss_type"),
        ({"temperature_scheduler": ["warm", 1]}, "flsw"),
        ({"hard_label_weight_scheduler": "exp_decay"}, "linear_growth"),
    ],
)
def test_unknown_names_list_the_known_ones(settings, word):
    with pytest.raises(ValueError, match=word):
        DistillationConfig(**settings)


def test_distillation_config_repr_shows_settings_and_matches():
    text = str(DistillationConfig(temperature=8, intermediate_matches=[good_match()]))
    assert "temperature: 8" in [line.strip() for line in text.splitlines()]
    assert "hidden_mse" in text and "layer_T" in text


# ----- schedulers, projections, register_new -------------------------------------------------


def test_weight_schedulers():
    # A weight scheduler gives the factor that multiplies the base weight at a step.
    assert WEIGHT_SCHEDULER["linear_decay"](25, 100) == pytest.approx(0.75)
    assert WEIGHT_SCHEDULER["linear_growth"](25, 100) == pytest.approx(0.25)


def test_temperature_schedulers_follow_their_formulas():
    logits_S = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.5, 3.0]])
    logits_T = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    assert TEMPERATURE_SCHEDULER["constant"](logits_S, logits_T, 4) == 4

    beta, gamma = 2.0, 2.0
    weights = []
    for s, t in zip(logits_S.tolist(), logits_T.tolist()):
        ns, nt = sum(x * x for x in s) ** 0.5 + 1e-4, sum(x * x for x in t) ** 0.5 + 1e-4
        weights.append((1 - sum(x / ns * y / nt for x, y in zip(s, t))) ** gamma)
    expected = [4 + (sum(weights) / 3 - w) * beta for w in weights]
    tau = TEMPERATURE_SCHEDULER["flsw"](beta, gamma)(logits_S, logits_T, 4)
    assert tau.tolist() == pytest.approx(expected, rel=1e-5)

    weights = [1 / (max(torch.softmax(torch.tensor(s), 0).tolist()) + 1e-3) for s in logits_S.tolist()]
    expected = [4 + (sum(weights) / 3 - w) * beta for w in weights]
    tau = TEMPERATURE_SCHEDULER["cwsm"](beta)(logits_S, logits_T, 4)
    assert tau.tolist() == pytest.approx(expected, rel=1e-5)


def test_scheduled_configs_are_accepted():
    config = DistillationConfig(
        temperature_scheduler=["flsw", 1, 1],
        kd_loss_weight_scheduler="linear_decay",
        hard_label_weight_scheduler="linear_growth",
    )
    assert callable(config.temperature_scheduler)  # TextBrewer's meaning: None or the function
    assert DistillationConfig(temperature_scheduler="constant").temperature_scheduler(None, None, 3) == 3
    assert config.kd_loss_weight_scheduler == "linear_decay"


def test_projections():
    torch.manual_seed(0)
    linear = PROJ_MAP["linear"](64, 128)
    assert isinstance(linear, torch.nn.Linear) and (linear.in_features, linear.out_features) == (64, 128)
    assert torch.equal(linear.bias, torch.zeros(128))
    assert linear.weight.std().item() == pytest.approx(0.02, rel=0.1)
    x = torch.randn(5, 64)
    assert torch.equal(PROJ_MAP["relu"](64, 8)(x) >= 0, torch.ones(5, 8, dtype=torch.bool))
    assert PROJ_MAP["tanh"](64, 8)(x * 100).abs().max() <= 1


def test_register_new_adds_to_the_named_map():
    def l1_loss(feature_S, feature_T, mask=None):
        return (feature_S - feature_T).abs().mean()

    register_new("MATCH_LOSS_MAP", "l1_test", l1_loss)
    try:
        assert MATCH_LOSS_MAP["l1_test"] is l1_loss
        config = DistillationConfig(intermediate_matches=[good_match(loss="l1_test")])
        assert config.intermediate_matches[0].loss == "l1_test"
    finally:
        del MATCH_LOSS_MAP["l1_test"]
    register_new("KD_LOSS_MAP", "ce_copy_test", KD_LOSS_MAP["ce"])
    try:
        assert DistillationConfig(kd_loss_type="ce_copy_test").kd_loss_type == "ce_copy_test"
    finally:
        del KD_LOSS_MAP["ce_copy_test"]


def test_register_new_rejects_an_unknown_map():
    with pytest.raises(ValueError, match="LOSS_MAPS") as error:
        register_new("LOSS_MAPS", "x", abs)
    assert "MATCH_LOSS_MAP" in str(error.value)


def test_pair_losses_need_pairs_and_single_losses_need_single_layers():
    with pytest.raises(ValueError, match=r"intermediate_matches\[0\]: loss 'mmd' takes lists of two"):
        DistillationConfig(
            intermediate_matches=[
                {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "mmd", "weight": 1}
            ]
        )
    with pytest.raises(ValueError, match=r"loss 'hidden_mse' takes layer indices"):
        DistillationConfig(
            intermediate_matches=[
                {"layer_T": [2, 2], "layer_S": [1, 1], "feature": "hidden", "loss": "hidden_mse", "weight": 1}
            ]
        )


def test_a_temperature_scheduler_builder_without_its_arguments_is_named():
    with pytest.raises(ValueError, match=r"temperature_scheduler 'flsw'.*\['flsw', 1, 1\]"):
        DistillationConfig(temperature_scheduler="flsw")


# ----- weights_at ------------------------------------------------------------------------------


def test_weights_without_schedules_are_the_base_weights():
    config = DistillationConfig(kd_loss_weight=0.7, hard_label_weight=0.3)
    assert config.weights_at(0, 10) == (0.7, 0.3)
    assert config.weights_at(9, 10) == (0.7, 0.3)


def test_weights_at_follows_the_linear_schedules_and_leaves_the_config_alone():
    config = DistillationConfig(
        kd_loss_weight=2.0,
        kd_loss_weight_scheduler="linear_decay",
        hard_label_weight=0.5,
        hard_label_weight_scheduler="linear_growth",
    )
    before = public_settings(config)
    # kd: 2 * (1 - step / total); hard: 0.5 * step / total.
    for step, kd, hard in [(0, 2.0, 0.0), (25, 1.5, 0.125), (50, 1.0, 0.25), (100, 0.0, 0.5)]:
        assert config.weights_at(step, 100) == pytest.approx((kd, hard))
    assert public_settings(config) == before


# ----- temperature_for ---------------------------------------------------------------------------


def test_temperature_without_a_schedule_is_the_base_temperature():
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert DistillationConfig(temperature=8).temperature_for(logits, logits) == 8
    assert (
        DistillationConfig(temperature=8, temperature_scheduler="constant").temperature_for(logits, logits)
        == 8
    )


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
    registered(
        "WEIGHT_SCHEDULER",
        "halfway_test",
        lambda step, total: 1.0 if step < total / 2 else 0.0,
        WEIGHT_SCHEDULER,
    )
    config = DistillationConfig(kd_loss_weight=3, kd_loss_weight_scheduler="halfway_test")
    assert config.weights_at(4, 10) == (3.0, 0)
    assert config.weights_at(5, 10) == (0.0, 0)


def test_a_registered_temperature_scheduler_is_used_by_temperature_for(registered):
    registered("TEMPERATURE_SCHEDULER", "double_test", lambda S, T, base: 2 * base, TEMPERATURE_SCHEDULER)
    config = DistillationConfig(temperature=3, temperature_scheduler="double_test")
    assert config.temperature_for(torch.zeros(1, 2), torch.zeros(1, 2)) == 6


def test_a_registered_projection_is_accepted_in_a_match(registered):
    registered(
        "PROJ_MAP",
        "bias_free_test",
        lambda dim_in, dim_out: torch.nn.Linear(dim_in, dim_out, bias=False),
        PROJ_MAP,
    )
    config = DistillationConfig(intermediate_matches=[good_match(proj=["bias_free_test", 16, 32])])
    assert config.intermediate_matches[0].proj == ["bias_free_test", 16, 32]


def test_a_registered_temperature_scheduler_builder_receives_its_arguments(registered):
    """A scheduler that takes arguments is a builder, given as [name, *args] or [name, {kwargs}]."""
    built = []

    def scaled_builder(factor, offset=0.0):
        built.append((factor, offset))
        return lambda logits_S, logits_T, base: factor * base + offset

    registered("TEMPERATURE_SCHEDULER", "scaled_test", scaled_builder, TEMPERATURE_SCHEDULER)
    logits = torch.zeros(1, 2)
    assert (
        DistillationConfig(temperature=3, temperature_scheduler=["scaled_test", 5]).temperature_for(
            logits, logits
        )
        == 15
    )
    assert (
        DistillationConfig(temperature=3, temperature_scheduler=["scaled_test", 5, 1.5]).temperature_for(
            logits, logits
        )
        == 16.5
    )
    config = DistillationConfig(
        temperature=2, temperature_scheduler=["scaled_test", {"factor": 4, "offset": 1}]
    )
    assert config.temperature_for(logits, logits) == 9
    assert built == [(5, 0.0), (5, 1.5), (4, 1)]  # built once per config, with its arguments
    with pytest.raises(
        ValueError, match=r"temperature_scheduler \['scaled_test', 1, 2, 3\]: the builder 'scaled_test'"
    ):
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
        DistillationConfig(
            intermediate_matches=[good_match(loss="pair_test", layer_T=[1, 2], layer_S=[0, 1])]
        )
    register_new("MATCH_LOSS_MAP", "pair_test", pair_distance, pair=True)
    try:
        config = DistillationConfig(
            intermediate_matches=[good_match(loss="pair_test", layer_T=[1, 2], layer_S=[0, 1])]
        )
        with pytest.raises(ValueError, match=r"loss 'pair_test' takes lists of two layer indices"):
            DistillationConfig(intermediate_matches=[good_match(loss="pair_test")])
        # GeneralDistiller hands the loss both layers of each side.
        model = torch.nn.Linear(2, 2)
        distiller = GeneralDistiller(
            TrainingConfig(device="cpu"), config, model, torch.nn.Linear(2, 2), None, None
        )
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

    def l1(S, T, mask=None):
        return (S - T).abs().mean()

    registered("match_Loss", "textbrewer_name_test", l1, MATCH_LOSS_MAP)
    assert MATCH_LOSS_MAP["textbrewer_name_test"] is l1
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
    assert any(
        "local_rank=0 is accepted for compatibility and ignored" in r.getMessage() for r in caplog.records
    )
    assert config.local_rank == 0
    # Nothing else follows from it: no data parallelism, the same device and settings.
    assert config.data_parallel is False and config.device == default.device
    assert {k: v for k, v in vars(config).items() if k != "local_rank"} == {
        k: v for k, v in vars(default).items() if k != "local_rank"
    }
