"""Checkpoints written in the background (distillation/checkpoint_writer.py): each file holds the
weights of its own step although training goes on while it is written, none is lost when they
come close together, and a write that fails stops training with its message."""

import collections
import errno
import os
import threading
import time

import pytest
import torch

import distillation.io
from distillation import BasicTrainer, CheckpointWriteError
from distillation.checkpoint_writer import HostCopy
from distillation.io import safe_torch_load
from tests.core.tiny_models import (
    TinyClassifier,
    adaptor,
    assert_same_state,
    checkpoint_steps,
    dict_loader,
    make_data,
    state_of,
    train_config,
)

STEPS = 6  # 48 examples, batches of 8


def trainer_of(tmp_path, **settings):
    return BasicTrainer(train_config(tmp_path, **settings), TinyClassifier(16, seed=2), adaptor)


def train(trainer, callback=None, num_steps=STEPS):
    # AdamW: its moments (state the optimizer changes in place) are in every resume state.
    optimizer = torch.optim.AdamW(trainer.model_S.parameters(), lr=0.01)
    trainer.train(optimizer, dict_loader(make_data(48), 8), num_steps=num_steps, callback=callback)


def slow_disk(monkeypatch, seconds):
    """Each checkpoint file's fsync takes `seconds` more."""
    original = distillation.io.fsync_path

    def slow(path):
        if os.path.basename(path).startswith(distillation.io.TEMPORARY_PREFIX):
            time.sleep(seconds)
        original(path)

    monkeypatch.setattr(distillation.io, "fsync_path", slow)


def disk_waiting_for_the_next_step(monkeypatch, trainer, seen):
    """The fsync of gs{k}.pkl (k < STEPS) waits until training has made step k + 1 (10 s at
    most: a writer that training waits for would never see it); seen gets (file, the step
    when its fsync began, the step when it ended)."""
    original = distillation.io.fsync_path

    def waiting(path):
        name = os.path.basename(path)
        if name.startswith(distillation.io.TEMPORARY_PREFIX):
            name = name.split("-")[1]
            before, deadline = trainer.global_step, time.time() + 10
            while name == f"gs{before}.pkl" and before < STEPS and trainer.global_step == before:
                time.sleep(0.001)
                if time.time() > deadline:
                    break
            seen.append((name, before, trainer.global_step))
        original(path)

    monkeypatch.setattr(distillation.io, "fsync_path", waiting)


def test_checkpoints_close_together_are_all_written_each_with_the_weights_of_its_step(tmp_path, monkeypatch):
    """A checkpoint at every step on a slow disk: training goes on while a file is written,
    the next checkpoint waits for it, and every file holds the weights its callback saw."""
    trainer = trainer_of(tmp_path, ckpt_steps=1, keep_resume_states=STEPS)
    writes, saved = [], {}
    disk_waiting_for_the_next_step(monkeypatch, trainer, writes)
    train(trainer, callback=lambda model, step: saved.update({step: state_of(model)}))
    out = tmp_path / "out"
    assert checkpoint_steps(out) == sorted(saved) == list(range(1, STEPS + 1))
    for step in saved:
        assert_same_state(safe_torch_load(out / f"gs{step}.pkl"), saved[step])
        state = safe_torch_load(out / f"resume_gs{step}.pt")
        assert state["global_step"] == step
        assert_same_state(state["model_S"], saved[step])
    assert not torch.equal(saved[1]["classifier.weight"], saved[STEPS]["classifier.weight"])
    # Training went on during the writes (the step moved while a file was on its way to the disk).
    assert [name for name, _, _ in writes] == [
        name for s in range(1, STEPS + 1) for name in (f"gs{s}.pkl", f"resume_gs{s}.pt")
    ]
    assert [after - before for name, before, after in writes if name.startswith("gs")] == [1] * (
        STEPS - 1
    ) + [0]
    assert not [name for name in os.listdir(out) if name.startswith(".tmp")]


def test_the_optimizer_moments_in_a_resume_state_are_those_of_its_step(tmp_path, monkeypatch):
    """The resume state's copy is made at the step: the optimizer's later updates, in place, do
    not reach the file, however slowly it is written."""
    trainer = trainer_of(tmp_path, ckpt_steps=2, keep_resume_states=STEPS)
    moments = {}

    def keep_moments(model, step):
        optimizer = trainer._run.optimizer
        moments[step] = [optimizer.state[p]["exp_avg"].clone() for p in model.parameters()]

    disk_waiting_for_the_next_step(monkeypatch, trainer, [])
    train(trainer, callback=keep_moments)
    for step, expected in moments.items():
        state = safe_torch_load(tmp_path / "out" / f"resume_gs{step}.pt")["optimizer"]["state"]
        for index, value in enumerate(expected):
            assert torch.equal(state[index]["exp_avg"], value), (step, index)
    assert not torch.equal(moments[2][0], moments[6][0])


def test_keep_resume_states_prunes_after_the_new_state_is_in_place(tmp_path, monkeypatch):
    trainer = trainer_of(tmp_path, ckpt_steps=1, keep_resume_states=2)
    slow_disk(monkeypatch, 0.02)
    train(trainer)
    names = sorted(os.listdir(tmp_path / "out"))
    assert [n for n in names if n.startswith("resume_gs")] == [
        f"resume_gs{STEPS - 1}.pt",
        f"resume_gs{STEPS}.pt",
    ]


def test_a_write_that_fails_stops_training_at_the_next_step_with_its_message(tmp_path, monkeypatch):
    """A full disk under the resume state of step 2: the run stops at step 3 with the error,
    gs2.pkl (written before it) stays whole, nothing half-written remains."""
    trainer = trainer_of(tmp_path, ckpt_steps=2)
    original = distillation.io.fsync_path

    def full(path):
        if os.path.basename(path).startswith(".tmp-resume_gs2.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        original(path)

    monkeypatch.setattr(distillation.io, "fsync_path", full)

    saved = {}

    def wait_for_the_failure(model, step):  # so that "the next step" is step 3, not later
        saved[step] = state_of(model)
        deadline = time.time() + 10
        while not trainer._writer.failed and time.time() < deadline:
            time.sleep(0.001)

    with pytest.raises(
        CheckpointWriteError, match=r"writing .*resume_gs2\.pt failed: .*No space left on device"
    ):
        train(trainer, callback=wait_for_the_failure)
    assert trainer.global_step == 3
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["gs2.pkl"]
    assert_same_state(safe_torch_load(out / "gs2.pkl"), saved[2])


def test_a_folder_that_can_no_longer_be_written_stops_training_when_it_ends(tmp_path):
    """A real failure, not a simulated one: the output folder replaced by a file after the first
    checkpoint. The last checkpoint's write fails, and train() raises it as it ends."""
    trainer = trainer_of(tmp_path, ckpt_steps=2)
    out = tmp_path / "out"

    def replace_folder(model, step):
        if step == 4:
            trainer._writer.wait()  # gs4.pkl and its state are written; then the folder goes
            os.rename(out, tmp_path / "moved")
            out.write_text("not a folder")

    with pytest.raises(CheckpointWriteError, match=r"writing .*gs6\.pkl failed: .*Not a directory"):
        train(trainer, callback=replace_folder)
    assert trainer.global_step == STEPS
    assert sorted(os.listdir(tmp_path / "moved")) == ["gs2.pkl", "gs4.pkl", "resume_gs2.pt", "resume_gs4.pt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_stops_training_with_the_error(tmp_path):
    trainer = trainer_of(tmp_path, ckpt_steps=2)
    out = tmp_path / "out"

    def read_only(model, step):
        if step == 2:
            trainer._writer.wait()
            out.chmod(0o555)

    try:
        with pytest.raises(CheckpointWriteError, match=r"writing .*gs4\.pkl failed: .*Permission denied"):
            train(trainer, callback=read_only)
    finally:
        out.chmod(0o755)
    assert sorted(os.listdir(out)) == ["gs2.pkl", "resume_gs2.pt"]


def test_the_host_copy_is_a_copy_kept_in_buffers_that_serve_the_next_one():
    source = torch.nn.Linear(3, 2)
    optimizer_state = {
        "state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.ones(2, 3)}},
        "groups": [0.1],
    }
    state = {"model": source.state_dict(), "optimizer": optimizer_state, "same": source.weight}
    host = HostCopy()
    first = host(state)
    host.ready()
    weight = source.weight.detach().clone()
    with torch.no_grad():
        source.weight.add_(1.0)
    optimizer_state["state"][0]["exp_avg"].mul_(3)
    optimizer_state["state"][0]["lr"] = 0.5  # a key added to the live nested dict
    optimizer_state["groups"].append(0.2)
    assert torch.equal(first["model"]["weight"], weight)
    assert torch.equal(first["optimizer"]["state"][0]["exp_avg"], torch.ones(2, 3))
    assert "lr" not in first["optimizer"]["state"][0] and first["optimizer"]["groups"] == [0.1]
    assert first["same"] is first["model"]["weight"]  # shared tensors stay shared in the file
    assert isinstance(first["model"], collections.OrderedDict)
    assert first["model"]._metadata == source.state_dict()._metadata  # what load_state_dict reads
    second = host(state)
    assert second["model"]["weight"].data_ptr() == first["model"]["weight"].data_ptr()  # reused
    assert torch.equal(second["model"]["weight"], source.weight.detach())


def test_a_write_runs_in_a_thread_of_its_own(tmp_path, monkeypatch):
    """The training thread is not the one that writes (the files of a run without a slow disk)."""
    writers = []
    original = distillation.io.fsync_path
    monkeypatch.setattr(
        distillation.io,
        "fsync_path",
        lambda path: (writers.append(threading.current_thread().name), original(path))[1],
    )
    train(trainer_of(tmp_path, ckpt_steps=3))
    assert writers and set(writers) == {"checkpoint-writer"}
