"""TrainingConfig, DistillationConfig and the named maps: TextBrewer 0.2.1's defaults, clear
errors for bad settings, readable reprs, and schedulers that follow their formulas."""
import logging

import pytest
import torch

import distillation
from distillation import (ADAPTOR_KEYS, FEATURES, KD_LOSS_MAP, MATCH_LOSS_MAP, PROJ_MAP,
                          TEMPERATURE_SCHEDULER, WEIGHT_SCHEDULER, DistillationConfig,
                          TrainingConfig, register_new)

EXPORTS = ["TrainingConfig", "DistillationConfig", "BasicTrainer", "BasicDistiller",
           "GeneralDistiller", "MultiTeacherDistiller", "KD_LOSS_MAP", "MATCH_LOSS_MAP", "PROJ_MAP",
           "TEMPERATURE_SCHEDULER", "WEIGHT_SCHEDULER", "FEATURES", "ADAPTOR_KEYS", "register_new"]


def good_match(**changes):
    match = {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
    match.update(changes)
    return match


def warnings_about(caplog, text):
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_the_package_exports_textbrewers_names():
    for name in EXPORTS:
        assert hasattr(distillation, name), name
    assert FEATURES == ["hidden", "attention"]
    assert ADAPTOR_KEYS == ["logits", "logits_mask", "losses", "inputs_mask", "labels", "hidden", "attention"]


# ----- TrainingConfig ------------------------------------------------------------------------

def test_training_config_defaults(caplog):
    config = TrainingConfig()
    assert (config.gradient_accumulation_steps, config.ckpt_frequency, config.ckpt_epoch_frequency,
            config.ckpt_steps, config.log_dir, config.output_dir) == (1, 1, 1, None, None, "./saved_models")
    assert (config.fp16, config.fp16_opt_level, config.data_parallel, config.local_rank) == (False, "O1", False, -1)
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


@pytest.mark.parametrize("key", ["gradient_accumulation_steps", "ckpt_frequency", "ckpt_epoch_frequency", "ckpt_steps"])
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
    assert (config.temperature, config.temperature_scheduler, config.hard_label_weight,
            config.hard_label_weight_scheduler, config.kd_loss_type, config.kd_loss_weight,
            config.kd_loss_weight_scheduler, config.probability_shift, config.is_caching_logits) == \
        (4, None, 0, "none", "ce", 1, "none", False, False)
    assert list(config.intermediate_matches) == []


def test_matches_become_intermediate_match_objects():
    config = DistillationConfig(intermediate_matches=[
        good_match(),
        {"layer_T": [0, 2], "layer_S": [0, 1], "feature": "hidden", "loss": "mmd", "weight": 0.5},
        good_match(proj=["linear", 16, 32]),
        good_match(proj=["tanh", 16, 32, {"lr": 1e-3}]),
    ])
    plain, pair, projected, with_options = config.intermediate_matches
    assert (plain.layer_T, plain.layer_S, plain.feature, plain.loss, plain.weight, plain.proj) == \
        (2, 1, "hidden", "hidden_mse", 1, None)
    assert (pair.layer_T, pair.layer_S, pair.loss, pair.weight) == ([0, 2], [0, 1], "mmd", 0.5)
    assert list(projected.proj[:3]) == ["linear", 16, 32]
    assert with_options.proj_group == {"lr": 1e-3}


@pytest.mark.parametrize("match, words", [
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
])
def test_bad_matches_name_their_index_and_key(match, words):
    with pytest.raises(ValueError) as error:
        DistillationConfig(intermediate_matches=[good_match(), match])
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("settings, word", [
    ({"kd_loss_type": "kl"}, "kd_loss_type"),
    ({"temperature_scheduler": "cosine"}, "constant"),
    ({"temperature_scheduler": ["warm", 1]}, "flsw"),
    ({"kd_loss_weight_scheduler": "exp_decay"}, "linear_decay"),
    ({"hard_label_weight_scheduler": "exp_decay"}, "linear_growth"),
])
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
    config = DistillationConfig(temperature_scheduler=["flsw", 1, 1], kd_loss_weight_scheduler="linear_decay",
                                hard_label_weight_scheduler="linear_growth")
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
        DistillationConfig(intermediate_matches=[
            {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "mmd", "weight": 1}])
    with pytest.raises(ValueError, match=r"loss 'hidden_mse' takes layer indices"):
        DistillationConfig(intermediate_matches=[
            {"layer_T": [2, 2], "layer_S": [1, 1], "feature": "hidden", "loss": "hidden_mse", "weight": 1}])


def test_a_temperature_scheduler_builder_without_its_arguments_is_named():
    with pytest.raises(ValueError, match=r"temperature_scheduler 'flsw'.*\['flsw', 1, 1\]"):
        DistillationConfig(temperature_scheduler="flsw")
