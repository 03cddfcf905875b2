"""Acceptance: programs written for TextBrewer 0.2.1 run here with only their import lines
changed, and give TextBrewer's losses.

Each program in tests/core/textbrewer_programs/ imports this project (`import distillation as
textbrewer`, `from distillation.distiller_utils import *`, ...). The tests run it as it is,
then run the same text with those import lines pointed back at TextBrewer 0.2.1, on identical
models, data and random seeds, and compare the losses of every training step.
"""

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import distillation

PROGRAMS = Path(__file__).parent / "textbrewer_programs"
IMPORT_PREFIXES = ("import distillation", "from distillation")
REFERENCE_REASON = (
    "TextBrewer 0.2.1 is the reference the losses are compared with; install it "
    "test-only: pip install --no-deps textbrewer==0.2.1.post1 tensorboardX"
)


def program_source(name, package):
    """The program's text; for package 'textbrewer', its import lines name TextBrewer instead."""
    source = (PROGRAMS / f"{name}.py").read_text(encoding="utf-8")
    if package == "distillation":
        return source
    lines = [
        line.replace("import distillation as textbrewer", "import textbrewer").replace(
            "distillation", "textbrewer"
        )
        if line.startswith(IMPORT_PREFIXES)
        else line
        for line in source.splitlines()
    ]
    return "\n".join(lines) + "\n"


def load_program(name, package):
    path = PROGRAMS / f"{name}.py"
    module = types.ModuleType(f"{name}_on_{package}")
    module.__file__ = str(path)
    exec(compile(program_source(name, package), str(path), "exec"), module.__dict__)
    return module


def textbrewer_package():
    return pytest.importorskip("textbrewer", reason=REFERENCE_REASON)


def record_batches(monkeypatch, cls):
    """Record (task or None, total loss, {term: loss}) of every train_on_batch of cls."""
    records = []
    original = cls.train_on_batch

    def recording(self, batch, *rest):
        total, losses = original(self, batch, *rest)
        task = str(batch[1]) if isinstance(batch, tuple) and isinstance(batch[1], str) else None
        records.append((task, total.item(), {name: value.item() for name, value in losses.items()}))
        return total, losses

    monkeypatch.setattr(cls, "train_on_batch", recording)
    return records


def assert_same_losses(ours, reference):
    assert len(ours) == len(reference) > 0
    for step, ((task, total, terms), (task_ref, total_ref, terms_ref)) in enumerate(zip(ours, reference)):
        assert task == task_ref, f"batch {step}: task {task} != {task_ref}"
        assert sorted(terms) == sorted(terms_ref), f"batch {step}"
        assert total == pytest.approx(total_ref, rel=1e-5, abs=1e-8), f"batch {step}"
        for name in terms:
            assert terms[name] == pytest.approx(terms_ref[name], rel=1e-5, abs=1e-8), f"batch {step}: {name}"


def assert_same_weights(model, reference):
    for (name, value), (_, value_ref) in zip(model.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(value, value_ref, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("name", ["random_tokens", "emd_distiller", "multitask"])
def test_only_the_import_lines_differ_from_the_textbrewer_version(name):
    ours = program_source(name, "distillation").splitlines()
    theirs = program_source(name, "textbrewer").splitlines()
    changed = [a for a, b in zip(ours, theirs) if a != b]
    assert len(ours) == len(theirs) and changed
    assert all(line.startswith(IMPORT_PREFIXES) for line in changed)
    assert not any("distillation" in line for line in theirs if line.startswith(("import", "from")))


# ----- TextBrewer's random-tokens example ----------------------------------------------------------


def test_random_tokens_program_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    program = load_program("random_tokens", "distillation")
    records = record_batches(monkeypatch, distillation.GeneralDistiller)
    printed, accuracies, _ = program.main(num_epochs=2)
    assert len(records) == 8  # 4 batches of 32, 32, 32, 4 examples, two epochs
    assert sorted(records[0][2]) == [
        "unweighted_hidden_hidden_mse_0_0",
        "unweighted_hidden_hidden_mse_2_8",
        "unweighted_hidden_nst_0-0_0-0",
        "unweighted_hidden_nst_2-2_8-8",
        "unweighted_kd_loss",
    ]
    assert sorted(accuracies) == [4, 8]  # the callback ran at each epoch's checkpoint
    assert (tmp_path / "saved_models" / "gs8.pkl").exists()
    teacher_table = printed[0]
    assert "LAYER NAME" in teacher_table and "--bert" in teacher_table and "--classifier" in teacher_table
    assert "layer" in teacher_table and "attention" not in teacher_table  # max_level=3 stops above


def test_random_tokens_program_matches_textbrewer(tmp_path, monkeypatch):
    textbrewer = textbrewer_package()
    runs = {}
    for package, distiller in (
        ("distillation", distillation.GeneralDistiller),
        ("textbrewer", textbrewer.GeneralDistiller),
    ):
        (tmp_path / package).mkdir()
        monkeypatch.chdir(tmp_path / package)
        records = record_batches(monkeypatch, distiller)
        _, accuracies, _ = load_program("random_tokens", package).main(num_epochs=2)
        runs[package] = records, accuracies
    assert_same_losses(runs["distillation"][0], runs["textbrewer"][0])
    assert runs["distillation"][1] == runs["textbrewer"][1]
    ours = torch.load(tmp_path / "distillation" / "saved_models" / "gs8.pkl")
    theirs = torch.load(tmp_path / "textbrewer" / "saved_models" / "gs8.pkl")
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5, msg=name)


# ----- a custom distiller in the seed's distiller_emd.py style -------------------------------------


def test_seed_style_emd_distiller_runs(tmp_path, monkeypatch):
    program = load_program("emd_distiller", "distillation")
    records = record_batches(monkeypatch, program.EMDDistiller)
    program.main(str(tmp_path), num_steps=4)
    assert len(records) == 4
    assert sorted(records[0][2]) == [
        "unweighted_embedding_hidden_mse",
        "unweighted_hard_label_loss",
        "unweighted_hidden_hidden_mse_emd",
        "unweighted_kd_loss",
    ]
    assert all(np.isfinite(total) for _, total, _ in records)
    assert (tmp_path / "gs4.pkl").exists()


def test_seed_style_emd_distiller_matches_textbrewer(tmp_path, monkeypatch):
    textbrewer_package()
    runs = {}
    for package in ("distillation", "textbrewer"):
        program = load_program("emd_distiller", package)
        records = record_batches(monkeypatch, program.EMDDistiller)
        runs[package] = records, program.main(str(tmp_path / package), num_steps=4)
    assert_same_losses(runs["distillation"][0], runs["textbrewer"][0])
    assert_same_weights(runs["distillation"][1], runs["textbrewer"][1])


# ----- MultiTaskDistiller -------------------------------------------------------------------------


def test_multitask_program_runs(tmp_path, monkeypatch):
    program = load_program("multitask", "distillation")
    records = record_batches(monkeypatch, distillation.MultiTaskDistiller)
    steps = []
    program.main(str(tmp_path), num_steps=6, callback=lambda model, step: steps.append(step))
    assert len(records) == 6 and {task for task, _, _ in records} <= {"parity", "topic"}
    assert sorted(records[0][2]) == [
        "unweighted_hard_label_loss",
        "unweighted_hidden_hidden_mse_2_3",
        "unweighted_kd_loss",
    ]
    assert steps == [3, 6]
    assert sorted(p.name for p in tmp_path.glob("gs*.pkl")) == ["gs3.pkl", "gs6.pkl"]


def test_multitask_program_accumulates_and_logs(tmp_path, monkeypatch):
    program = load_program("multitask", "distillation")
    records = record_batches(monkeypatch, distillation.MultiTaskDistiller)
    program.main(str(tmp_path), num_steps=4, accumulation=2, log_dir=str(tmp_path / "logs"))
    assert len(records) == 8  # two batches per optimizer step
    lines = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert lines and all(
        {"loss", "unweighted_kd_loss", "unweighted_hidden_hidden_mse_2_3"} <= set(line) for line in lines
    )
    assert lines[-1]["step"] == 4  # the last step is always logged


@pytest.mark.parametrize("accumulation", [1, 2])
def test_multitask_program_matches_textbrewer(tmp_path, monkeypatch, accumulation):
    textbrewer = textbrewer_package()
    runs = {}
    for package, distiller in (
        ("distillation", distillation.MultiTaskDistiller),
        ("textbrewer", textbrewer.MultiTaskDistiller),
    ):
        records = record_batches(monkeypatch, distiller)
        program = load_program("multitask", package)
        runs[package] = (
            records,
            program.main(str(tmp_path / package), num_steps=8 // accumulation, accumulation=accumulation),
        )
    ours, reference = runs["distillation"][0], runs["textbrewer"][0]
    assert {task for task, _, _ in reference} == {"parity", "topic"}  # both tasks drawn, in the same order
    assert_same_losses(ours, reference)
    assert_same_weights(runs["distillation"][1], runs["textbrewer"][1])
