"""Checkpoint loading in every supported layout, and build_model (label orders:
test_label_order.py)."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from distillation.io import atomic_torch_save
from pipeline.checkpoints import build_model, load_checkpoint, map_checkpoint_keys
from pipeline.model_config import parse_model_config
from tests.helpers import (
    LABELS,
    NUM_LABELS,
    assert_same_weights,
    encoder_keys,
    make_batch,
    make_model,
    model_bert_config,
)


@pytest.fixture
def config(tmp_path):
    return model_bert_config(tmp_path)


# --- checkpoints -----------------------------------------------------------------------------


def save_state(state, path):
    if str(path).endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        atomic_torch_save(state, str(path))
    return str(path)


@pytest.mark.parametrize("name", ["gs8.pkl", "model.bin", "model.pt", "model.safetensors"])
def test_our_state_dict_round_trips(config, tmp_path, name, caplog):
    source = make_model(config, seed=0)
    path = save_state(source.state_dict(), tmp_path / name)
    target = make_model(config, seed=1)
    with caplog.at_level(logging.INFO, logger="pipeline.checkpoints"):
        report = load_checkpoint(target, path, "teacher")
    total = len(source.state_dict())
    assert (len(report.loaded), report.total, report.missing, report.unexpected) == (total, total, [], [])
    assert f"teacher: loaded {total} of {total} tensors from {path}" in caplog.text
    batch = make_batch(config)
    torch.testing.assert_close(target(**batch)["logits"], source(**batch)["logits"], rtol=0, atol=0)


def test_hugging_face_folder_of_a_bert_model(config, tmp_path, caplog):
    source = make_model(config, seed=0)
    source.bert.save_pretrained(str(tmp_path / "hf"))  # model.safetensors with bare keys
    student = make_model(config, seed=1)
    with caplog.at_level(logging.INFO, logger="pipeline.checkpoints"):
        report = load_checkpoint(student, str(tmp_path / "hf"), "student")
    assert report.loaded == encoder_keys(source)
    assert report.missing == ["classifier.bias", "classifier.weight"]
    assert "no classifier" in caplog.text
    assert_same_weights(source, student, encoder_keys(source))
    assert not torch.equal(source.classifier.weight, student.classifier.weight)


def test_hugging_face_folder_with_pytorch_model_bin(config, tmp_path):
    source = make_model(config, seed=0)
    (tmp_path / "hf").mkdir()
    torch.save(source.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
    teacher = make_model(config, seed=1)
    report = load_checkpoint(teacher, str(tmp_path / "hf"), "teacher")
    assert report.missing == [] and len(report.loaded) == report.total
    assert_same_weights(source, teacher, source.state_dict())


def test_folder_without_weights_is_an_error(config, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds none of model.safetensors, pytorch_model.bin"):
        load_checkpoint(make_model(config), str(tmp_path / "empty"), "student")


def test_bare_bert_model_keys_load_into_a_student_but_not_a_teacher(config, tmp_path):
    source = make_model(config, seed=0)
    path = save_state(source.bert.state_dict(), tmp_path / "bert_model.bin")
    assert not any(key.startswith("bert.") for key in torch.load(path, weights_only=True))
    student = make_model(config, seed=1)
    report = load_checkpoint(student, path, "student")
    assert len(report.loaded) == len(source.bert.state_dict()) == len(encoder_keys(source))
    assert report.unexpected == []
    assert_same_weights(source, student, encoder_keys(source))
    with pytest.raises(
        ValueError,
        match=r"teacher checkpoint .*bert_model\.bin lacks 2 of the "
        r"model's \d+ tensors: classifier\.bias, classifier\.weight",
    ):
        load_checkpoint(make_model(config), path, "teacher")


def google_style(state):
    """Our keys renamed as TensorFlow-converted BERT files name them, with pre-training heads."""
    renamed = {}
    for key, tensor in state.items():
        if key.startswith("classifier."):
            continue
        if "LayerNorm." in key:
            key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
        renamed[key] = tensor
    renamed["cls.predictions.bias"] = torch.zeros(7)
    renamed["cls.seq_relationship.weight"] = torch.zeros(2, 32)
    renamed["bert.embeddings.position_ids"] = torch.arange(64)[None]
    return renamed


def test_google_style_checkpoint_loads(config, tmp_path):
    source = make_model(config, seed=0)
    converted = google_style(source.state_dict())
    assert any(key.endswith("LayerNorm.gamma") for key in converted)
    path = save_state(converted, tmp_path / "pytorch_model.bin")
    student = make_model(config, seed=1)
    report = load_checkpoint(student, path, "student")
    assert report.loaded == encoder_keys(source)
    # The pre-training heads are reported; the position_ids buffer is dropped without a word.
    assert report.unexpected == ["cls.predictions.bias", "cls.seq_relationship.weight"]
    assert_same_weights(source, student, encoder_keys(source))


def test_key_mapping_rules():
    model_state = {
        "bert.embeddings.LayerNorm.weight": None,
        "bert.pooler.dense.bias": None,
        "classifier.weight": None,
    }
    mapped = map_checkpoint_keys(
        {
            "bert.embeddings.LayerNorm.gamma": 1,
            "pooler.dense.bias": 2,
            "classifier.weight": 3,
            "cls.predictions.bias": 4,
            "embeddings.position_ids": 5,
            "encoder.layer.0.beta_x": 6,
        },
        model_state,
    )
    assert mapped == {
        "bert.embeddings.LayerNorm.weight": 1,
        "bert.pooler.dense.bias": 2,
        "classifier.weight": 3,
        "cls.predictions.bias": 4,
        "bert.encoder.layer.0.beta_x": 6,
    }


def test_deeper_checkpoint_fills_a_shallower_student(config, tmp_path):
    deep_config = config.__class__.from_dict(dict(config.to_dict(), num_hidden_layers=4))
    source = make_model(deep_config, seed=0)
    path = save_state(source.state_dict(), tmp_path / "deep.pkl")
    student = make_model(config, seed=1)  # 2 layers: layers 0 and 1 of the 4
    report = load_checkpoint(student, path, "student")
    assert report.missing == [] and len(report.loaded) == report.total
    assert report.unexpected and all(
        key.startswith(("bert.encoder.layer.2.", "bert.encoder.layer.3.")) for key in report.unexpected
    )
    assert_same_weights(source, student, student.state_dict())


def test_student_checkpoint_without_encoder_weights_is_an_error(config, tmp_path):
    path = save_state(
        {"model.encoder.weight": torch.zeros(3), "classifier.weight": torch.zeros(NUM_LABELS, 32)},
        tmp_path / "other_layout.pkl",
    )
    with pytest.raises(
        ValueError,
        match=r"student checkpoint .*other_layout\.pkl: none of its 2 "
        r"tensors matches the encoder",
    ):
        load_checkpoint(make_model(config), path, "student")


def test_shape_mismatch_names_key_and_shapes(config, tmp_path):
    state = make_model(config).state_dict()
    state["bert.encoder.layer.1.intermediate.dense.weight"] = torch.zeros(48, 32)
    path = save_state(state, tmp_path / "wrong.pkl")
    with pytest.raises(
        ValueError,
        match=r"wrong\.pkl does not fit .*1 shape mismatch\(es\): "
        r"bert\.encoder\.layer\.1\.intermediate\.dense\.weight: "
        r"checkpoint \(48, 32\) vs model \(64, 32\)",
    ):
        load_checkpoint(make_model(config), path, "student")


class WritesAMarker:
    """Unpickling this object would create a file: what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_carrying_code_is_refused(config, tmp_path):
    marker = tmp_path / "marker"
    state = make_model(config).state_dict()
    state["payload"] = WritesAMarker(str(marker))
    torch.save(state, tmp_path / "evil.pkl")
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"evil\.pkl was refused: .*never runs pickled code"):
        load_checkpoint(make_model(config), str(tmp_path / "evil.pkl"), "student")
    assert not marker.exists()


def test_a_file_that_is_not_a_torch_file(config, tmp_path):
    (tmp_path / "notes.pkl").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.pkl is not a readable torch file"):
        load_checkpoint(make_model(config), str(tmp_path / "notes.pkl"), "student")


# --- build_model -----------------------------------------------------------------------------


def test_build_model_loads_the_checkpoints_of_the_json(config, tmp_path):
    source = make_model(config, seed=0)
    path = save_state(source.state_dict(), tmp_path / "teacher.pkl")
    models = {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": str(tmp_path / "vocab.txt"),
        "config_file": str(tmp_path / "bert_config.json"),
    }
    setup = parse_model_config(
        {
            "teachers": [dict(models, checkpoint=path)],
            "student": dict(models, checkpoint=None, num_hidden_layers=1),
        }
    )
    teacher = build_model(
        setup.teachers[0], LABELS, "teacher", output_hidden_states=True, output_attentions=False
    )
    assert not teacher.training
    assert_same_weights(source, teacher, source.state_dict())
    student = build_model(setup.student, LABELS, "student", output_hidden_states=True, output_attentions=True)
    assert student.training and student.config.num_hidden_layers == 1
    outputs = student(**make_batch(config))
    assert len(outputs["hidden_states"]) == 2 and len(outputs["attentions"]) == 1
    assert setup.student.bert_config._attn_implementation != "eager"


def test_build_model_refuses_a_teacher_without_checkpoint(config, tmp_path):
    models = {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": str(tmp_path / "vocab.txt"),
        "config_file": str(tmp_path / "bert_config.json"),
        "checkpoint": None,
    }
    setup = parse_model_config({"teachers": [models], "student": models})
    with pytest.raises(ValueError, match=r"teachers\[0\]: a teacher needs a checkpoint"):
        build_model(setup.teachers[0], LABELS, "teacher")
