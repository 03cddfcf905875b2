"""The training log's TensorBoard event files (distillation/loss_log.py), read back with
TensorBoard's own reader: each logged term at its step, and after a resume no step twice. Without
the tensorboard package the log goes on without them. (Rank 0 alone writes them under torchrun:
tests/example/test_distributed.py.)"""

import json
import shutil
import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader

from distillation import BasicTrainer, TrainingConfig
from tests.core.tiny_models import TinyClassifier, adaptor, make_data
from tests.helpers import TENSORBOARD_REASON, event_files, tensorboard_scalars

STEPS_PER_EPOCH, EPOCHS = 4, 2  # a checkpoint and a resume state after each epoch


def train(folder, resume_from=None):
    """A BasicTrainer run logging every step into folder; its metrics.jsonl records."""
    data = make_data(8 * STEPS_PER_EPOCH)
    batches = [
        {key: value[i : i + 8] for key, value in data.items()} for i in range(0, len(data["labels"]), 8)
    ]
    trainer = BasicTrainer(
        TrainingConfig(device="cpu", output_dir=str(folder), log_dir=str(folder)),
        TinyClassifier(8, seed=0),
        adaptor,
    )
    trainer.log_every_steps = 1
    if resume_from is not None:
        trainer.resume_from(str(resume_from))
    with trainer:  # closes the event file
        trainer.train(
            torch.optim.SGD(trainer.model_S.parameters(), lr=0.1),
            DataLoader(batches, batch_size=None),
            num_epochs=EPOCHS,
        )
    with open(folder / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def assert_scalars_are_the_records(scalars, records):
    """Each term of each record at the record's step, once, in step order (float32 in the file)."""
    logged = [record for record in records if not record.get("resumed")]
    assert set(scalars) == {name for name in logged[0] if name != "step"}
    for tag, values in scalars.items():
        assert [step for step, _ in values] == [record["step"] for record in logged], tag
        assert [value for _, value in values] == pytest.approx([record[tag] for record in logged], rel=1e-6)


def test_the_event_file_holds_each_logged_term_at_its_step(tmp_path):
    pytest.importorskip("tensorboard", reason=TENSORBOARD_REASON)
    records = train(tmp_path / "run")
    assert [record["step"] for record in records] == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))
    assert len(event_files(tmp_path / "run")) == 1
    assert_scalars_are_the_records(tensorboard_scalars(tmp_path / "run"), records)


def test_a_resumed_run_hides_the_steps_logged_after_its_resume_state(tmp_path):
    """Interrupted after step 8 with its newest state at step 4: the old event file holds steps
    5 to 8, which the resumed run logs again in a file of its own. TensorBoard shows each once."""
    pytest.importorskip("tensorboard", reason=TENSORBOARD_REASON)
    straight = tmp_path / "straight"
    records = train(straight)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(straight, interrupted)
    last = STEPS_PER_EPOCH * EPOCHS
    (interrupted / f"gs{last}.pkl").unlink()
    (interrupted / f"resume_gs{last}.pt").unlink()
    # TensorBoard orders the files by name, whose first field is the second each was opened in:
    # a real resume comes later than that, and so must the test's.
    opened = max(int(name.split(".")[3]) for name in event_files(interrupted))
    time.sleep(max(0.0, opened + 1 - time.time()))
    resumed = train(interrupted, resume_from=interrupted / f"resume_gs{STEPS_PER_EPOCH}.pt")
    assert {"step": STEPS_PER_EPOCH, "resumed": True} in resumed
    assert len(event_files(interrupted)) == 2
    assert_scalars_are_the_records(tensorboard_scalars(interrupted), records)


def test_without_tensorboard_the_log_goes_on_without_event_files(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # an import of it fails
    for name in [name for name in sys.modules if name.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError):
        import torch.utils.tensorboard  # noqa: F401
    records = train(tmp_path / "run")
    assert [record["step"] for record in records] == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))
    assert event_files(tmp_path / "run") == []
