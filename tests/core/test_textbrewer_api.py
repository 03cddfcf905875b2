"""TextBrewer 0.2.1's module paths and helpers as this project provides them: what they import,
what they compute, and (where TextBrewer is installed) that they agree with TextBrewer's."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import distillation
from distillation.adaptors import get_outputs_from_batch, select_logits_with_mask
from distillation.data_utils import deleting, long_disorder, masking, n_gram_sampling, short_disorder
from distillation.distillers import probability_shift_
from distillation.task_sampling import TaskBatches, cycle
from distillation.utils import LayerNode, display_parameters

REFERENCE_REASON = (
    "TextBrewer 0.2.1 is the reference; install it test-only: "
    "pip install --no-deps textbrewer==0.2.1.post1 tensorboardX"
)


# ----- module paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, names",
    [
        (
            "distiller_utils",
            [
                "get_outputs_from_batch",
                "post_adaptor",
                "select_logits_with_mask",
                "probability_shift_",
                "move_to_device",
                "auto_forward",
                "AbstractDistiller",
                "MATCH_LOSS_MAP",
                "PROJ_MAP",
                "FEATURES",
                "logger",
                "torch",
                "nn",
                "np",
                "Optional",
                "Dict",
            ],
        ),
        ("distiller_basic", ["BasicDistiller"]),
        ("distiller_general", ["GeneralDistiller"]),
        ("distiller_multiteacher", ["MultiTeacherDistiller"]),
        ("distiller_multitask", ["MultiTaskDistiller"]),
        ("distiller_train", ["BasicTrainer"]),
        ("distillers", ["BasicDistiller", "MultiTaskDistiller"]),
        ("presets", ["ADAPTOR_KEYS", "KD_LOSS_MAP", "register_new"]),
        ("configurations", ["TrainingConfig", "DistillationConfig"]),
        ("compatibility", ["mask_dtype", "is_apex_available"]),
        ("utils", ["display_parameters", "LayerNode", "cycle"]),
        ("data_utils", ["masking", "deleting", "n_gram_sampling", "short_disorder", "long_disorder"]),
    ],
)
def test_star_imports_of_textbrewer_module_paths(module, names):
    namespace = {}
    exec(f"from distillation.{module} import *", namespace)
    missing = [name for name in names if name not in namespace]
    assert not missing


def test_the_compatibility_modules_re_export_the_real_objects():
    from distillation import distiller_basic, distiller_multitask, distiller_utils, distillers

    assert distiller_basic.BasicDistiller is distillers.BasicDistiller is distillation.BasicDistiller
    assert distiller_multitask.MultiTaskDistiller is distillation.MultiTaskDistiller
    assert distiller_utils.post_adaptor is distillation.adaptors.post_adaptor
    assert distillation.Distillers == {
        "Basic": distillation.BasicDistiller,
        "General": distillation.GeneralDistiller,
        "MultiTeacher": distillation.MultiTeacherDistiller,
        "MultiTask": distillation.MultiTaskDistiller,
        "Train": distillation.BasicTrainer,
    }


def test_configs_from_dict_and_json_file(tmp_path):
    settings = {
        "temperature": 8,
        "hard_label_weight": 0.5,
        "intermediate_matches": [
            {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
        ],
    }
    path = tmp_path / "distill.json"
    path.write_text(json.dumps(settings))
    config = distillation.DistillationConfig.from_json_file(path)
    assert (config.temperature, config.hard_label_weight, config.intermediate_matches[0].layer_T) == (
        8,
        0.5,
        2,
    )
    assert config.temperature_scheduler is None  # TextBrewer's meaning of 'none'
    assert distillation.TrainingConfig.from_dict({"device": "cpu", "ckpt_steps": 5}).ckpt_steps == 5


# ----- display_parameters ---------------------------------------------------------------------------


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6))
        self.decoder = nn.Linear(4, 10, bias=False)
        self.decoder.weight = self.embed.weight  # tied: counted once


def test_display_parameters_counts_by_module():
    table, root = display_parameters(Tied())
    assert isinstance(root, LayerNode)
    assert root.value[0] == 40 + (24 + 6) + (6 + 6)
    assert root["encoder"].value[0] == 42 and root["encoder"]["0"].value[0] == 30
    assert root["encoder"]["0"]["weight"].fullname == "encoder.0.weight"
    assert root.value[1] == pytest.approx(82 * 4 / 1024 / 1024)
    shared = root["decoder"]["weight"]
    assert shared.value == [0, 0] and shared.name == "weight(shared)"
    assert shared.fullname == "decoder.weight(shared)"
    assert "--encoder" in table and "42" in table and "51.22%" in table  # 42 / 82
    shallow, _ = display_parameters(Tied(), max_level=1)
    assert "--encoder" in shallow and "--0" not in shallow
    assert display_parameters(Tied().state_dict())[1].value[0] == 82
    with pytest.raises(TypeError):
        display_parameters([1, 2])


def test_display_parameters_tree_matches_textbrewer():
    textbrewer_utils = pytest.importorskip("textbrewer.utils", reason=REFERENCE_REASON)
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
        )
    )

    def flatten(node):
        rows = [(node.fullname, node.name, node.value[0], round(node.value[1], 9))]
        for child in node.children_name.values():
            rows += flatten(child)
        return rows

    assert flatten(display_parameters(model)[1]) == flatten(textbrewer_utils.display_parameters(model)[1])


# ----- augmentations -------------------------------------------------------------------------------


def test_augmentations_follow_their_definitions():
    np.random.seed(0)
    tokens = list(range(40))
    assert masking(tokens, p=0) == tokens and masking(tokens, p=1, mask="M") == ["M"] * 40
    masked = masking(tokens, p=0.5)
    assert 5 < masked.count("[MASK]") < 35 and all(m in ("[MASK]", t) for m, t in zip(masked, tokens))
    assert deleting(tokens, p=0) == tokens and deleting(tokens, p=1) == []
    kept = deleting(tokens, p=0.5)
    assert kept == sorted(kept) and set(kept) < set(tokens)
    for _ in range(20):
        span = n_gram_sampling(tokens, p_ng=[0, 0, 1, 0, 0])
        assert len(span) == 3 and span == tokens[span[0] : span[0] + 3]
    assert n_gram_sampling([7, 8], p_ng=[0, 0, 0, 0, 1]) == [7, 8]  # shorter than the n-gram
    assert short_disorder(tokens, p=[1, 0, 0, 0, 0]) == tokens
    assert short_disorder(list("abcdef"), p=[0, 1, 0, 0, 0]) == list("badcfe")
    assert short_disorder(list("abcdef"), p=[0, 0, 1, 0, 0]) == list("cbafed")
    assert short_disorder(list("abcdef"), p=[0, 0, 0, 1, 0]) == list("cabfde")
    assert short_disorder(list("abcde"), p=[0, 0, 0, 0, 1]) == list("bcaed")  # last two: swapped
    assert sorted(short_disorder(tokens, p=[0.2] * 5)) == tokens
    assert long_disorder(list(range(11)), p=1, length=0.4) == [2, 3, 0, 1, 6, 7, 4, 5, 8, 9, 10]
    assert long_disorder(list(range(6)), p=1, length=3) == [2, 3, 0, 1, 4, 5]  # 3 -> span of 4
    assert long_disorder(tokens, p=0, length=4) == tokens
    assert long_disorder([1, 2, 3], p=1, length=0.1) == [1, 2, 3]  # no span to swap


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("masking", {"p": 0.3}),
        ("deleting", {"p": 0.3}),
        ("n_gram_sampling", {}),
        ("short_disorder", {"p": [0.2, 0.2, 0.2, 0.2, 0.2]}),
        ("long_disorder", {"p": 0.3, "length": 4}),
    ],
)
def test_seeded_augmentations_equal_textbrewer(name, kwargs):
    reference = pytest.importorskip("textbrewer.data_utils", reason=REFERENCE_REASON)
    ours = getattr(distillation.data_utils, name)
    for seed in range(30):
        tokens = list(range(np.random.RandomState(seed).randint(5, 30)))
        np.random.seed(seed)
        expected = list(getattr(reference, name)(tokens, **kwargs))
        np.random.seed(seed)
        assert list(ours(tokens, **kwargs)) == expected, seed


# ----- distiller_utils helpers ----------------------------------------------------------------------


class Recorder(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x, y=None):
        return self.scale * x + (0 if y is None else y)


def test_get_outputs_from_batch():
    teacher, student = Recorder(2), Recorder(3)
    x = torch.ones(2)
    (batch_T, out_T), (batch_S, out_S) = get_outputs_from_batch({"x": x}, "cpu", teacher, student, {})
    assert batch_T is batch_S and torch.equal(out_T, 2 * x) and torch.equal(out_S, 3 * x)
    assert not out_T.requires_grad and out_S.requires_grad  # the teacher runs without gradients
    (_, out_T), (_, out_S) = get_outputs_from_batch((x,), "cpu", [teacher, student], student, {"y": x})
    assert [o.tolist() for o in out_T] == [[3, 3], [4, 4]]
    (_, out_T), _ = get_outputs_from_batch((x,), "cpu", {"a": teacher}, student, {})
    assert list(out_T) == ["a"]
    split = {"teacher": {"x": x}, "student": {"x": 2 * x}}
    (batch_T, out_T), (batch_S, out_S) = get_outputs_from_batch(split, "cpu", teacher, student, {})
    assert out_T.tolist() == [2, 2] and out_S.tolist() == [6, 6] and torch.equal(batch_S["x"], 2 * x)
    cached = {**split, "teacher_cache": torch.zeros(2)}
    (_, out_T), _ = get_outputs_from_batch(cached, "cpu", teacher, student, {})
    assert out_T.tolist() == [0, 0]
    (_, out_T), _ = get_outputs_from_batch({"x": x}, "cpu", teacher, student, {}, no_teacher_forward=True)
    assert out_T is None


def test_select_logits_with_mask():
    generator = torch.Generator().manual_seed(0)
    logits3, logits2 = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 4, generator=generator)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    selected, untouched = select_logits_with_mask([logits3, logits2], [mask])
    assert selected.shape == (3, 4) and torch.equal(selected[2], logits3[1, 0]) and untouched is logits2
    with pytest.raises(ValueError):
        select_logits_with_mask([logits3, logits3, logits3], [mask, mask])
    reference = pytest.importorskip("textbrewer.distiller_utils", reason=REFERENCE_REASON)
    for ours, theirs in zip(
        select_logits_with_mask([logits3, logits2], [mask, mask]),
        reference.select_logits_with_mask([logits3, logits2], [mask, mask]),
    ):
        assert torch.equal(ours, theirs)


def test_probability_shift_in_place_leaves_ignored_positions():
    logits = torch.tensor([[[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]]])
    result = probability_shift_(logits, torch.tensor([[2, -100]]))
    assert result is logits
    assert logits.tolist() == [[[2.0, 1.0, 3.0], [0.0, 5.0, 1.0]]]


# ----- MultiTaskDistiller's batches and checks ------------------------------------------------------


def test_task_batches_draw_tasks_by_size_to_the_power_tau():
    loaders = {"big": [("b", i) for i in range(30)], "small": [("s", i) for i in range(10)]}
    assert TaskBatches(loaders, tau=1).probabilities == pytest.approx([0.75, 0.25])
    assert TaskBatches(loaders, tau=0).probabilities == pytest.approx([0.5, 0.5])
    np.random.seed(0)
    stream = iter(TaskBatches(loaders, tau=1, length=4))
    drawn = [next(stream) for _ in range(2000)]
    share = sum(task == "big" for _, task in drawn) / len(drawn)
    assert share == pytest.approx(0.75, abs=0.04)
    smalls = [batch for batch, task in drawn if task == "small"]
    assert smalls[:12] == [("s", i % 10) for i in range(12)]  # each loader cycles in its own order
    unsized = TaskBatches({"a": iter([1, 2]), "b": [3]})
    assert unsized.probabilities is None and len(TaskBatches(loaders, length=3)) == 3
    with pytest.raises(ValueError):
        next(cycle([]))
    with pytest.raises(ValueError):
        TaskBatches({})


def test_multitask_distiller_checks_its_dicts():
    config_T, config_D = distillation.TrainingConfig(device="cpu"), distillation.DistillationConfig()
    student = Recorder(1)
    with pytest.raises(ValueError, match="dict"):
        distillation.MultiTaskDistiller(config_T, config_D, Recorder(1), student, {}, {})
    with pytest.raises(ValueError, match="same tasks"):
        distillation.MultiTaskDistiller(
            config_T, config_D, {"a": Recorder(1)}, student, {"a": None}, {"b": None}
        )
    distiller = distillation.MultiTaskDistiller(
        config_T, config_D, {"a": Recorder(1)}, student, {"a": None}, {"a": None}
    )
    assert distiller.teachers == [distiller.model_T["a"]] and not distiller.model_T["a"].scale.requires_grad
    with pytest.raises(ValueError, match="no teacher"):
        distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), {"b": [1]}, num_steps=1)
