"""A student that stops learning is loud: main.py's log, the checkpoints' records in
eval_results.jsonl and tools/report.py's table say so; a healthy run says nothing."""

import json
import logging
import math

import pytest
import torch

import main
from pipeline.evaluation import most_frequent_label_scores
from pipeline.student_check import StudentCheck
from tests.helpers import model_entry, write_bert_config, write_model_json, write_tiny_mnli, write_vocab
from tools import report

FORCED_AT = 32  # the step after which the student's classifier is held at zero


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("student_check")
    vocab = write_vocab(root / "vocab.txt")
    config = write_bert_config(
        root / "student.json", num_hidden_layers=2, hidden_size=16, intermediate_size=32
    )
    return {
        "data": write_tiny_mnli(root / "data", n_train=64, n_dev=24),
        "model_json": write_model_json(root / "model.json", [], model_entry(vocab, config)),
    }


def train(files, output_dir, epochs, forced_at=None):
    """A student trained alone on the tiny corpus at lr 1e-2 (it learns the train set); with
    forced_at, its classifier's weight is set to zero and frozen after that step, so that it
    answers every input alike: its logits are its bias."""

    def build(args, train_config, teachers, student, matches):
        distiller = main.build_distiller(args, train_config, teachers, student, matches)
        optimizer_step = distiller._optimizer_step

        def step(run):
            optimizer_step(run)
            if run.global_step == forced_at:
                with torch.no_grad():
                    student.classifier.weight.zero_()
                student.classifier.weight.requires_grad_(False)

        distiller._optimizer_step = step
        return distiller

    main.run(
        [
            "--data_dir",
            str(files["data"]),
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            files["model_json"],
            "--do_train",
            "--do_eval",
            "--max_seq_length",
            "24",
            "--train_batch_size",
            "16",
            "--num_train_epochs",
            str(epochs),
            "--learning_rate",
            "1e-2",
            "--PRINT_EVERY",
            "4",
        ],
        build_distiller=build,
    )
    with open(output_dir / "eval_results.jsonl") as f:
        return {record.pop("step"): record for record in map(json.loads, f)}


def kinds(record):
    return [warning["kind"] for warning in record.get("warnings", [])]


def test_a_student_that_stops_learning_is_said_so_in_the_log_the_record_and_the_table(
    files, tmp_path, caplog, capsys
):
    with caplog.at_level(logging.WARNING):
        records = train(files, tmp_path / "run", epochs=40, forced_at=FORCED_AT)  # 4 steps an epoch
    stalled = [step for step, record in records.items() if "stalled_loss" in kinds(record)]
    # Said from a checkpoint after the stretch of 50 batches at the level, and at each one after.
    assert stalled and stalled == [step for step in records if step >= stalled[0]]
    assert FORCED_AT + 50 <= stalled[0] <= 160
    last = records[160]
    assert kinds(last) == ["stalled_loss", "at_baseline"]
    stall, baseline = (warning["message"] for warning in last["warnings"])
    assert "the student stopped learning: its hard-label loss has sat at" in stall
    for option in ("--learning_rate", "--warmup_proportion", "--max_grad_norm 1", "--matches"):
        assert option in stall and option in baseline
    # The tiny dev sets hold each label 8 times: the bar is a third.
    assert "33.3 on mnli (always" in baseline and "no better than always answering" in baseline
    # The log: the core's line when the stall began, the example's at each checkpoint after it.
    assert caplog.text.count("the student has stopped learning") == 1
    assert caplog.text.count("the student stopped learning: its hard-label loss") == len(stalled)

    capsys.readouterr()
    report.main(
        [f"Collapsed={tmp_path / 'run'}", "--json", str(tmp_path / "results.json"), "--parallel", "2"]
    )
    table = capsys.readouterr().out.splitlines()
    assert json.loads((tmp_path / "results.json").read_text())[0]["warnings"] == [
        "stalled_loss",
        "at_baseline",
    ]
    assert table[0].endswith("| wall time (2 runs at a time) |")
    assert table[2].startswith("| Collapsed (!) | 33.3 | 33.3 |")
    assert table[4].startswith(
        "(!) Collapsed: stopped learning: its loss sat at a constant prediction's; no better"
    )
    assert table[5].startswith("Rows ran 2 at a time")


def test_a_healthy_run_says_nothing(files, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        records = train(files, tmp_path / "run", epochs=12)
    assert not any("stalled_loss" in kinds(record) for record in records.values())
    last = records[max(records)]
    assert last["acc"]["All"] > 0.6 and "warnings" not in last
    assert "stopped learning" not in caplog.text
    rows = report.collect([f"Healthy={tmp_path / 'run'}"])
    assert rows[0]["warnings"] == [] and "(!)" not in report.markdown(rows)


def test_the_dev_bar_is_the_most_frequent_train_label():
    class Task:
        num_labels, labels, output_mode = 3, ["contradiction", "entailment", "neutral"], "classification"

    train_labels = torch.tensor([2, 2, 2, 0, 1, 2, 0])
    dev = {"a": torch.tensor([2, 0, 1, 1]), "b": torch.tensor([2, 2, 2, 1, 0])}
    majority, scores = most_frequent_label_scores(train_labels, dev, 3)
    assert majority == 2 and scores == pytest.approx({"a": 0.25, "b": 0.6})
    check = StudentCheck(Task, train_labels, dev)
    # The stall's level: from the entropy of the train labels' frequencies (2, 1 and 4 of 7) to ln 3.
    assert check.watch.low == pytest.approx(-sum(p * math.log(p) for p in (2 / 7, 1 / 7, 4 / 7)))
    assert check.watch.high == pytest.approx(math.log(3))
    # 0.27 on a (bar 0.25 + 0.02) and 0.62 on b (bar 0.62): both no better.
    assert [w["kind"] for w in check.warnings({"a": {"acc": 0.27}, "b": {"acc": 0.62}})] == ["at_baseline"]
    assert check.warnings({"a": {"acc": 0.28}, "b": {"acc": 0.63}}) == []
    message = check.warnings({"a": {"acc": 0.5}, "b": {"acc": 0.5}})[0]["message"]
    assert "50.0 on b (always 'neutral': 60.0)" in message and " on a " not in message
