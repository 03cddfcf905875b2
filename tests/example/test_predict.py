"""predict.py's commands: new pairs, a labelled file's metrics (submission files: test_tasks.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline.custom_task import read_pairs
from pipeline.data import feature_batches
from pipeline.evaluation import format_label_report, label_report, predict_outputs
from pipeline.trained_models import load_exported
from tests.helpers import make_pair, write_random_classifier, write_tiny_mnli
from utils_glue import LABELS, convert_examples_to_features, read_mnli_tsv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A random tiny classifier (gs1.pkl, its JSON, its export) and a labelled dev file."""
    root = tmp_path_factory.mktemp("predict")
    data = write_tiny_mnli(root / "data", n_train=8, n_dev=12)
    model = write_random_classifier(root / "model")
    return {**model, "data": data, "dev": read_mnli_tsv(str(data / "dev_matched.tsv"))}


def run_predict(*args, stdin=None):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "predict.py"), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def expected_probabilities(model_files, examples):
    trained = load_exported(str(model_files["export"]))
    features = convert_examples_to_features(
        examples,
        LABELS,
        64,
        trained.tokenizer,  # the CLI default here
        labelled=False,
    )
    return predict_outputs(trained.model, feature_batches(features, 4), "cpu")


def parse_output(stdout):
    lines = stdout.splitlines()
    assert lines[0] == "label\tcontradiction\tentailment\tneutral"
    rows = [line.split("\t") for line in lines[1:]]
    return [row[0] for row in rows], np.array([[float(p) for p in row[1:]] for row in rows])


def test_pairs_from_tsv_and_from_json_lines_on_stdin(model_files, tmp_path):
    import random

    rng = random.Random(5)
    pairs = [make_pair(rng)[:2] for _ in range(5)] + [('he said "yes" .', "a 'quoted' one .")]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("sentence1\tsentence2\n" + "".join(f"{a}\t{b}\n" for a, b in pairs))
    examples = read_pairs(str(tsv))
    expected = expected_probabilities(model_files, examples)

    from_file = run_predict("pairs", "--model", model_files["export"], tsv)
    assert from_file.returncode == 0, from_file.stderr
    labels, probabilities = parse_output(from_file.stdout)
    assert labels == [LABELS[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)

    jsonl = "".join(json.dumps({"sentence1": a, "sentence2": b}) + "\n" for a, b in pairs)
    from_stdin = run_predict(
        "pairs",
        "--model_config_json",
        model_files["json"],
        "--checkpoint",
        model_files["checkpoint"],
        "-",
        stdin=jsonl,
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "pairs.tsv",
            "premise\tsentence2\na\tb\n",
            "pairs.tsv, line 1: the header lacks the column(s) sentence1 (expected sentence1, sentence2; "
            "it has premise, sentence2)",
        ),
        (
            "pairs.tsv",
            "sentence1\tsentence2\na\tb\nc\n",
            "pairs.tsv, line 3: expected 2 columns as in the header, found 1",
        ),
        (
            "pairs.jsonl",
            '{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "a"}\n',
            "pairs.jsonl, line 2: the object lacks the key 'sentence2'",
        ),
        (
            "pairs.jsonl",
            '{"sentence1": "a", "sentence2": "b"}\n\n{"sentence1": \n',
            "pairs.jsonl, line 3: not JSON",
        ),
        ("pairs.tsv", "", "pairs.tsv: empty file"),
    ],
)
def test_bad_pairs_get_one_line_and_exit_1(model_files, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    result = run_predict("pairs", "--model", model_files["export"], path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_model_options_are_checked(model_files, tmp_path):
    missing = run_predict("pairs", "--model", tmp_path / "nowhere", stdin="")
    assert missing.returncode == 1 and "not an exported model folder (no config.json)" in missing.stderr
    neither = run_predict("pairs", stdin="")
    assert neither.returncode == 1 and "name a model" in neither.stderr
    teacher = run_predict(
        "pairs", "--model_config_json", model_files["json"], "--which", "teacher0", stdin=""
    )
    assert teacher.returncode == 1 and "has 0 teacher(s)" in teacher.stderr


def test_eval_command_prints_accuracy_and_the_label_report(model_files):
    dev = model_files["data"] / "dev_matched.tsv"
    result = run_predict("eval", "--model", model_files["export"], dev)
    assert result.returncode == 0, result.stderr
    expected = expected_probabilities(model_files, model_files["dev"]).argmax(1)
    gold = np.array([LABELS.index(e.label) for e in model_files["dev"]])
    assert f"acc {float((expected == gold).mean()):.4f} (12 examples)" in result.stdout
    report = format_label_report(str(model_files["export"]), label_report(expected, gold, LABELS))
    assert report in result.stdout
