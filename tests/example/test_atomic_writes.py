"""docs/reliability.md (was README, "Interrupted runs and errors"): which of the example's files are
written whole (a temporary file renamed onto the name) and which are logs appended a line at a time.
The core's files (checkpoints, resume states, metrics.jsonl) are in tests/core/test_io.py."""

import json
import os

import pytest
from transformers import BertTokenizer

from pipeline import evaluation, feature_cache
from pipeline.feature_cache import load_features
from tests.helpers import record_atomic_writes, write_tiny_mnli, write_vocab
from tools import report
from utils_glue import TASKS


@pytest.fixture
def renamed(monkeypatch):
    return record_atomic_writes(monkeypatch, feature_cache)


def test_the_feature_cache_is_renamed_into_place(tmp_path, renamed):
    data_dir = write_tiny_mnli(tmp_path / "data", n_train=8, n_dev=4)
    vocab = write_vocab(tmp_path / "vocab.txt")
    load_features(
        TASKS["mnli"],
        str(data_dir),
        "train",
        BertTokenizer(vocab=str(vocab)),
        str(vocab),
        16,
        str(tmp_path / "cache"),
    )
    assert len(renamed) == 1 and renamed[0] in os.listdir(tmp_path / "cache")


def record(folder, step, matched, mismatched):
    evaluation.record_results(
        str(folder), step, {"mnli": {"acc": matched}, "mnli-mm": {"acc": mismatched}}, "classification"
    )


def finished_run(folder, accuracy):
    folder.mkdir()
    record(folder, 7, accuracy, accuracy)
    return f"run={folder}"


def test_results_json_is_renamed_into_place_and_a_failed_write_keeps_the_old_one(
    tmp_path, monkeypatch, renamed, capsys
):
    target = tmp_path / "results.json"
    report.main([finished_run(tmp_path / "a", 0.5), "--json", str(target)])
    assert renamed[-1] == "results.json"
    assert json.loads(target.read_text())[0]["mnli"] == 0.5

    def killed(fd):
        raise OSError("killed while writing")

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(OSError, match="killed while writing"):
        report.main([finished_run(tmp_path / "b", 0.75), "--json", str(target)])
    assert json.loads(target.read_text())[0]["mnli"] == 0.5  # the old file, whole
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "results.json"]  # no temporary left


def test_eval_results_are_rewritten_whole_one_line_per_step_in_order(tmp_path, monkeypatch, renamed):
    """A resumed run may evaluate a checkpoint again (or one it missed): its line replaces the
    old one, the lines stay in step order, and a write killed half-way keeps the old files."""
    record(tmp_path, 2, 0.5, 0.5)
    record(tmp_path, 1, 0.25, 0.5)
    record(tmp_path, 2, 0.75, 0.5)
    expected = [
        "step: 1 Acc:mnli=0.25000 mnli-mm=0.50000 All=0.37500",
        "step: 2 Acc:mnli=0.75000 mnli-mm=0.50000 All=0.62500",
    ]
    assert (tmp_path / "eval_results.txt").read_text().splitlines() == expected
    assert [json.loads(line)["step"] for line in open(tmp_path / "eval_results.jsonl")] == [1, 2]
    assert renamed == ["eval_results.txt", "eval_results.jsonl"] * 3  # rewritten, the JSON lines last

    def killed(fd):
        raise OSError("killed while writing")

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(OSError, match="killed while writing"):
        record(tmp_path, 3, 1.0, 1.0)
    assert (tmp_path / "eval_results.txt").read_text().splitlines() == expected
    assert sorted(os.listdir(tmp_path)) == ["eval_results.jsonl", "eval_results.txt"]
