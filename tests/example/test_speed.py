"""tools/speed.py at a tiny size: the three rows, their sizes, and the int8 student's accuracy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import write_bert_config, write_random_classifier, write_tiny_mnli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_speed(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.speed", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


def test_speed_table_of_teacher_student_and_int8_student(tmp_path):
    from pipeline.trained_models import load_exported
    from predict import feature_batches, predict_labels
    from utils_glue import LABELS, convert_examples_to_features, read_mnli_tsv

    data = write_tiny_mnli(tmp_path / "data", n_train=4, n_dev=30)
    student = write_random_classifier(tmp_path / "student", hidden_size=64, intermediate_size=128)
    teacher_config = write_bert_config(
        tmp_path / "teacher.json", num_hidden_layers=3, hidden_size=48, intermediate_size=96
    )
    dev_file = data / "dev_matched.tsv"
    result = run_speed(
        "--teacher",
        teacher_config,
        "--student",
        student["export"],
        "--dev_file",
        dev_file,
        "--length",
        16,
        "--batch_size",
        4,
        "--repeats",
        2,
        "--batch_repeats",
        1,
        "--threads",
        1,
        "--no_cuda",
        "--json",
        tmp_path / "rows.json",
    )
    assert result.returncode == 0, result.stderr
    assert "CPU: " in result.stdout and ", 1 threads" in result.stdout
    rows = {row["model"]: row for row in json.loads((tmp_path / "rows.json").read_text())}
    assert list(rows) == ["teacher", "student", "student int8 (dynamic)"]

    # Parameters: the teacher's 3 x 48 layers, counted by hand; the int8 row keeps the count.
    vocab, hidden, inner, layers = 5 + 35, 48, 96, 3
    per_layer = (
        4 * (hidden * hidden + hidden)
        + 2 * hidden
        + (hidden * inner + inner)
        + (inner * hidden + hidden)
        + 2 * hidden
    )
    embeddings = (vocab + 64 + 2) * hidden + 2 * hidden
    assert (
        rows["teacher"]["parameters"]
        == embeddings + layers * per_layer + hidden * hidden + hidden + hidden * 3 + 3
    )
    assert rows["student int8 (dynamic)"]["parameters"] == rows["student"]["parameters"]
    assert rows["student"]["file_mb"] * 2**20 == os.path.getsize(student["export"] / "model.safetensors")
    assert rows["student int8 (dynamic)"]["file_mb"] < 0.6 * rows["student"]["file_mb"]
    for row in rows.values():
        assert row["latency_ms"] > 0 and row["pairs_per_s"] > 0 and row["peak_mb"] > 0

    trained = load_exported(str(student["export"]))
    features = convert_examples_to_features(read_mnli_tsv(str(dev_file)), LABELS, 16, trained.tokenizer)
    preds, labels = predict_labels(trained.model, feature_batches(features, 8), "cpu")
    assert rows["student"]["dev_acc"] == pytest.approx(float(np.mean(preds == labels)))
    assert abs(rows["student int8 (dynamic)"]["dev_acc"] - rows["student"]["dev_acc"]) <= 0.2
    assert rows["teacher"]["dev_acc"] is None
    assert "| student int8 (dynamic) | cpu | " in result.stdout


def test_bad_arguments_get_one_line(tmp_path):
    missing = run_speed("--student", tmp_path / "nowhere.json")
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith(
        f"--student {tmp_path / 'nowhere.json'}: no such config file or folder"
    )
    config = write_bert_config(tmp_path / "student.json")
    untrained = run_speed("--student", config, "--dev_file", tmp_path / "dev.tsv")
    assert untrained.returncode == 1 and "needs a trained student" in untrained.stderr
