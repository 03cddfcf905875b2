"""Atomic writes: all or nothing, with the permissions a plain open() would give; the core's
checkpoints and resume states written whole (renamed into place), metrics.jsonl appended a line
at a time (docs/reliability.md). The example's files: tests/example/test_atomic_writes.py."""

import json
import os
import stat

import pytest
import torch
from torch.utils.data import DataLoader

from distillation import BasicTrainer, TrainingConfig
from distillation.io import atomic_path, atomic_write_text
from tests.core.tiny_models import TinyClassifier, adaptor, make_data
from tests.helpers import record_atomic_writes


@pytest.fixture
def renamed(monkeypatch):
    return record_atomic_writes(monkeypatch)


def test_atomic_write_gives_umask_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "results.txt", "step: 1\n")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "results.txt").st_mode) == 0o644
    assert (tmp_path / "results.txt").read_text() == "step: 1\n"


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "gs10.pkl"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["gs10.pkl"]


def test_checkpoints_and_resume_states_are_renamed_into_place(tmp_path, renamed):
    data = make_data(32)
    batches = [{key: value[i : i + 16] for key, value in data.items()} for i in (0, 16)]
    trainer = BasicTrainer(
        TrainingConfig(device="cpu", output_dir=str(tmp_path)), TinyClassifier(8, seed=0), adaptor
    )
    trainer.train(
        torch.optim.SGD(trainer.model_S.parameters(), lr=0.1),
        DataLoader(batches, batch_size=None),
        num_epochs=1,
    )
    assert renamed == ["gs2.pkl", "resume_gs2.pt"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp")]


def test_metrics_jsonl_is_a_log_appended_a_line_at_a_time(tmp_path, renamed):
    data = make_data(32)
    batches = [{key: value[i : i + 8] for key, value in data.items()} for i in range(0, 32, 8)]
    trainer = BasicTrainer(
        TrainingConfig(device="cpu", output_dir=str(tmp_path / "out"), log_dir=str(tmp_path / "out")),
        TinyClassifier(8, seed=0),
        adaptor,
    )
    trainer.log_every_steps = 1  # (print_freq = 1 would be one line per epoch)
    trainer.train(
        torch.optim.SGD(trainer.model_S.parameters(), lr=0.1),
        DataLoader(batches, batch_size=None),
        num_epochs=1,
    )
    assert [json.loads(line)["step"] for line in open(tmp_path / "out" / "metrics.jsonl")] == [1, 2, 3, 4]
    assert "metrics.jsonl" not in renamed
