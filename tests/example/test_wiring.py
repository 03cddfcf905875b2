"""The pipeline's wiring, checked against what it is wired to: EMD's projection trained and
saved, a disabled teacher left out, the dev sets each scored on its own file (test_tasks.py
scores every task's dev sets against the checkpoint independently; test_evaluation.py checks All)."""

import json

import pytest
import torch

import main
from distillation import BasicTrainer, GeneralDistiller, checkpoint_steps, latest_state
from distiller_emd import EMDDistiller
from tests.helpers import model_entry, run_main_emd, write_bert_config, write_tiny_mnli, write_vocab


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("wiring")
    files = {
        "root": root,
        "data": write_tiny_mnli(root / "data", n_train=48, n_dev=12),
        "vocab": write_vocab(root / "vocab.txt"),
        "teacher_config": write_bert_config(root / "teacher.json", num_hidden_layers=3, hidden_size=32),
        "student_config": write_bert_config(
            root / "student.json", num_hidden_layers=2, hidden_size=16, intermediate_size=32, dropout=0.1
        ),
    }
    from transformers import BertConfig

    from modeling import BertForGLUESimple

    torch.manual_seed(0)
    teacher = BertForGLUESimple(BertConfig.from_json_file(str(files["teacher_config"])), 3)
    torch.save(teacher.state_dict(), root / "teacher.pkl")
    files["teacher"] = str(root / "teacher.pkl")
    return files


def entry(files, config, checkpoint=None, **extra):
    return model_entry(files["vocab"], files[config], checkpoint, **extra)


def options(files, output_dir, teachers):
    model_json = output_dir.parent / f"{output_dir.name}.json"
    model_json.write_text(json.dumps({"teachers": teachers, "student": entry(files, "student_config")}))
    return [
        "--data_dir",
        str(files["data"]),
        "--output_dir",
        str(output_dir),
        "--model_config_json",
        str(model_json),
        "--do_train",
        "--max_seq_length",
        "24",
        "--train_batch_size",
        "8",
        "--num_train_epochs",
        "1",
        "--learning_rate",
        "1e-2",
        "--allow_weak_teacher",
    ]


def spying(build, seen):
    def spy(args, train_config, teachers, student, matches):
        seen["distiller"] = distiller = build(args, train_config, teachers, student, matches)
        seen["start"] = (
            {name: p.detach().clone() for name, p in distiller.projection.named_parameters()}
            if hasattr(distiller, "projection")
            else None
        )
        return distiller

    return spy


def test_emds_projection_is_in_the_optimizer_changes_and_is_saved(files, tmp_path):
    from tests.helpers import load_main_emd

    seen = {}
    output_dir = tmp_path / "emd"
    run_main_emd(
        options(files, output_dir, [entry(files, "teacher_config", files["teacher"])]),
        build_distiller=spying(load_main_emd().build_emd_distiller, seen),
    )
    distiller = seen["distiller"]
    assert type(distiller) is EMDDistiller
    projection = distiller.projection
    # Trained: every parameter moved from where it started.
    for name, param in projection.named_parameters():
        assert not torch.equal(param, seen["start"][name]), name
    # In the optimizer: the resume state's optimizer holds Adam moments of the projection's shapes.
    state = torch.load(latest_state(output_dir), weights_only=True)
    moments = {tuple(s["exp_avg"].shape) for s in state["optimizer"]["state"].values()}
    assert {tuple(p.shape) for p in projection.parameters()} <= moments
    # Saved: the resume state's projection is the trained one.
    assert all(torch.equal(state["projs"][0][name], param) for name, param in projection.named_parameters())


@pytest.mark.parametrize(
    "disabled, distiller_class", [([True], BasicTrainer), ([False, True], GeneralDistiller)]
)
def test_a_disabled_teacher_is_left_out(files, tmp_path, disabled, distiller_class):
    """A disabled teacher's files need not exist; it is neither built nor checked."""
    teachers = [
        entry(files, "teacher_config", files["teacher"] if not off else "/nowhere/teacher.pkl", disable=off)
        for off in disabled
    ]
    seen = {}

    def spy(args, train_config, teachers, student, matches):
        seen["teachers"] = len(teachers)
        seen["distiller"] = main.build_distiller(args, train_config, teachers, student, matches)
        return seen["distiller"]

    output_dir = tmp_path / "run"
    main.run(options(files, output_dir, teachers), build_distiller=spy)
    assert type(seen["distiller"]) is distiller_class
    assert seen["teachers"] == sum(not off for off in disabled)
    assert checkpoint_steps(output_dir)
    check = output_dir / "teacher_check.json"
    assert check.exists() == (distiller_class is GeneralDistiller)
    if check.exists():
        assert [t["name"] for t in json.loads(check.read_text())["teachers"]] == ["teachers[0]"]
