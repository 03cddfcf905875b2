"""evaluation.py: the metrics of each dev set, All as their mean, the results and report files."""

import json

import numpy as np
import pytest

import main
from pipeline import evaluation
from pipeline.data import feature_batches
from pipeline.trained_models import load_exported
from tests.helpers import (
    model_entry,
    write_bert_config,
    write_constant_classifier,
    write_counted_mnli,
    write_model_json,
    write_random_classifier,
    write_tiny_mnli,
    write_vocab,
)
from utils_glue import LABELS, TASKS, convert_examples_to_features, read_mnli_tsv


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A random tiny classifier (gs1.pkl, its JSON, its export) and a labelled dev file."""
    root = tmp_path_factory.mktemp("evaluation")
    data = write_tiny_mnli(root / "data", n_train=8, n_dev=12)
    model = write_random_classifier(root / "model")
    return {**model, "data": data, "dev": read_mnli_tsv(str(data / "dev_matched.tsv"))}


def test_label_report_counts_each_label():
    # gold:      c c c e e n ; predicted: c c e e n n
    labels, preds = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    report = evaluation.label_report(np.array(preds), np.array(labels), LABELS)
    assert report["labels"] == LABELS
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert report["recall"] == pytest.approx([2 / 3, 0.5, 1.0])
    assert report["f1"] == pytest.approx([0.8, 0.5, 2 / 3])
    assert report["support"] == [3, 2, 1]


def test_a_label_absent_from_the_gold_labels_is_counted_as_zero_and_the_report_prints():
    # scikit-learn returns the supports as floats when a label has none: the report's %d failed.
    report = evaluation.label_report(np.array([0, 0, 0]), np.array([2, 2, 1]), LABELS)
    assert report["support"] == [0, 1, 2] and all(type(n) is int for n in report["support"])
    assert "contradiction     0.0000  0.0000  0.0000        0" in evaluation.format_label_report("x", report)


def test_a_label_never_predicted_has_zero_precision_without_a_warning(recwarn):
    report = evaluation.label_report(np.array([0, 0]), np.array([0, 2]), LABELS)
    assert report["precision"][2] == 0 and report["recall"][2] == 0
    assert not [w for w in recwarn if "ill-defined" in str(w.message)]


def test_report_files_hold_one_entry_per_step_in_step_order(tmp_path):
    report = evaluation.label_report(np.array([0, 1, 2]), np.array([0, 1, 1]), LABELS)
    for step in (8, 4, 8):  # a resumed run evaluates step 8 again
        evaluation.record_report(str(tmp_path), step, {"mnli": report, "mnli-mm": report})
    records = [json.loads(line) for line in (tmp_path / evaluation.REPORT_JSONL).read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8]
    assert records[1]["reports"]["mnli"]["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    text = (tmp_path / evaluation.REPORT_TEXT).read_text()
    assert text.count("step 8, mnli-mm") == 1 and text.index("step 4, mnli") < text.index("step 8")
    assert "confusion matrix (rows: gold, columns: predicted)" in text
    assert "entailment        1.0000  0.5000  0.6667        2" in text


def test_evaluation_writes_the_report_beside_the_results(tmp_path, model_files):
    trained = load_exported(str(model_files["export"]))
    features = convert_examples_to_features(model_files["dev"], LABELS, 24, trained.tokenizer)
    loaders = {"mnli": list(feature_batches(features, 5)), "mnli-mm": list(feature_batches(features, 7))}
    results = evaluation.record_evaluation(str(tmp_path), 3, trained.model, loaders, "cpu", TASKS["mnli"])
    record = json.loads((tmp_path / evaluation.REPORT_JSONL).read_text())
    gold = features["labels"].numpy()
    for task in ("mnli", "mnli-mm"):
        confusion = np.array(record["reports"][task]["confusion"])
        assert confusion.sum(axis=1).tolist() == np.bincount(gold, minlength=3).tolist()
        assert np.trace(confusion) / confusion.sum() == pytest.approx(results[task]["acc"])


# Counted by hand: entailment is 12 of dev_matched's 24 pairs and 3 of dev_mismatched's 16.
COUNTS = {
    "train.tsv": {"contradiction": 3, "entailment": 2, "neutral": 3},
    "dev_matched.tsv": {"contradiction": 5, "entailment": 12, "neutral": 7},
    "dev_mismatched.tsv": {"contradiction": 6, "entailment": 3, "neutral": 7},
}


def test_each_dev_set_is_scored_on_its_own_file_and_all_is_their_mean(tmp_path):
    """main.py --do_predict with a model that always answers entailment: mnli scores 12/24 = 0.5,
    mnli-mm 3/16 = 0.1875, All their mean 0.34375 (the pooled 15/40 would be 0.375, the first
    file's twice 0.5)."""
    data = write_counted_mnli(tmp_path / "data", COUNTS)
    vocab = write_vocab(tmp_path / "vocab.txt")
    config = write_bert_config(
        tmp_path / "config.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32
    )
    checkpoint = write_constant_classifier(tmp_path / "entailment.pkl", config, LABELS.index("entailment"))
    model_json = write_model_json(tmp_path / "model.json", [], model_entry(vocab, config, checkpoint))
    main.run(["--data_dir", str(data), "--output_dir", str(tmp_path / "run"), "--model_config_json", model_json,
              "--do_predict", "--max_seq_length", "24", "--predict_batch_size", "5"])  # fmt: skip
    line = (tmp_path / "run" / evaluation.RESULTS_TEXT).read_text()
    assert line == "step: 0 Acc:mnli=0.50000 mnli-mm=0.18750 All=0.34375\n"
    record = json.loads((tmp_path / "run" / evaluation.RESULTS_JSONL).read_text())
    assert record["acc"] == pytest.approx({"mnli": 12 / 24, "mnli-mm": 3 / 16, "All": (12 / 24 + 3 / 16) / 2})


def test_all_is_the_mean_of_the_sets_accuracies_not_the_pooled_accuracy(tmp_path):
    """The original example's All (predict_function.write_results): the mean over the dev sets.
    With sets of different sizes the pooled accuracy would differ: 1/4 and 3/4 over 4 and 12
    examples pool to (1 + 9) / 16 = 0.625, while their mean is 0.5."""
    metrics = {"mnli": {"acc": 0.25}, "mnli-mm": {"acc": 0.75}}
    evaluation.record_results(str(tmp_path), 5, metrics, "classification")
    line = (tmp_path / evaluation.RESULTS_TEXT).read_text()
    assert line == "step: 5 Acc:mnli=0.25000 mnli-mm=0.75000 All=0.50000\n"
    record = json.loads((tmp_path / evaluation.RESULTS_JSONL).read_text())
    assert record == {"step": 5, "acc": {"mnli": 0.25, "mnli-mm": 0.75, "All": 0.5}, "metrics": metrics}


def test_the_result_line_adds_a_tasks_other_metrics():
    record = {"acc": {"mrpc": 0.8, "All": 0.8}, "metrics": {"mrpc": {"acc": 0.8, "f1": 0.875}}}
    assert evaluation.result_line(3, record) == "step: 3 Acc:mrpc=0.80000 f1=0.87500 All=0.80000"
    record = {
        "pearson": {"sts-b": 0.5, "All": 0.5},
        "metrics": {"sts-b": {"pearson": 0.5, "spearmanr": 0.25}},
    }
    assert evaluation.result_line(3, record) == "step: 3 Pearson:sts-b=0.50000 spearmanr=0.25000 All=0.50000"
