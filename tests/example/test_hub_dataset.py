"""--dataset: GLUE and your own data as Hugging Face datasets (the Hub's nyu-mll/glue layout,
save_to_disk folders, folders of parquet files), generated here with `datasets` from the same
rows as GLUE's files. The same rows give the same examples, the same features and a
bit-identical student; labels are matched by name, never by number (the Hub numbers MNLI's
labels entailment 0, neutral 1, contradiction 2, GLUE's files and the classifier's rows order
them contradiction, entailment, neutral)."""

import csv
import importlib.util
import json
import logging
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import augment
import main
import predict
from distillation import checkpoint_steps
from pipeline.data import FeatureReader
from pipeline.model_config import parse_model_config
from pipeline.tasks import open_task
from tests.helpers import (
    HUB,
    REPO,
    hub_dataset,
    make_pair,
    model_entry,
    write_bert_config,
    write_glue_task,
    write_model_json,
    write_parquet_folder,
    write_vocab,
)
from utils_glue import TASKS

needs_datasets = pytest.mark.skipif(
    importlib.util.find_spec("datasets") is None,
    reason="the `datasets` library is not installed (requirements-test.txt installs it)",
)
LENGTH = 24


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """datasets' cache (the arrow files a parquet folder is read into) in the test's folder, not
    the user's: the tests leave nothing behind."""
    if importlib.util.find_spec("datasets") is not None:
        import datasets

        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-models")
    vocab = write_vocab(root / "vocab.txt")
    config = write_bert_config(
        root / "student.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32, dropout=0.1
    )
    return {"root": root, "vocab": vocab, "config": config,
            "json": write_model_json(root / "alone.json", [], model_entry(vocab, config))}  # fmt: skip


def train(model_json, source, output_dir, *extra):
    main.run([*source, "--output_dir", str(output_dir), "--model_config_json", model_json, "--do_train",
              "--do_eval", "--max_seq_length", str(LENGTH), "--train_batch_size", "8", "--num_train_epochs", "2",
              "--learning_rate", "1e-3", *extra])  # fmt: skip
    return output_dir


def assert_same_runs(first, second, files=("eval_results.txt",)):
    """Bit-identical students (every tensor of every checkpoint) and the same records."""
    steps = checkpoint_steps(first)
    assert steps and steps == checkpoint_steps(second)
    for step in steps:
        a, b = (torch.load(run / f"gs{step}.pkl", weights_only=True) for run in (first, second))
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), step
    for name in files:
        assert (first / name).read_text() == (second / name).read_text(), name


@needs_datasets
@pytest.mark.parametrize("task", list(HUB))
def test_each_glue_task_reads_the_hubs_layout_as_its_files(tmp_path, task):
    folder = write_glue_task(tmp_path / "glue", task)
    hub = write_parquet_folder(hub_dataset(task, folder), tmp_path / "hub", HUB[task][0])
    from_files, files_dir = open_task(task, str(folder))
    from_hub, reference = open_task(task, None, dataset=str(hub))
    assert (from_hub.dev_sets.keys(), from_hub.test_sets.keys()) == (
        from_files.dev_sets.keys(),
        from_files.test_sets.keys(),
    )
    for name in ["train", *from_files.dev_sets]:
        expected = [(e.text_a, e.text_b, e.label) for e in from_files.get_examples(files_dir, name)]
        got = [(e.text_a, e.text_b, e.label) for e in from_hub.get_examples(reference, name)]
        if task == "sts-b":  # the Hub's float32 scores: the same float32 as the files' text
            expected = [(a, b, np.float32(y)) for a, b, y in expected]
            got = [(a, b, np.float32(y)) for a, b, y in got]
        assert got == expected, name
    for name in from_files.test_sets:  # unlabelled, the guid the index GLUE's submission wants
        expected = [(e.guid, e.text_a, e.text_b) for e in from_files.get_examples(files_dir, name)]
        assert [(e.guid, e.text_a, e.text_b, e.label) for e in from_hub.get_examples(reference, name)] == [
            (*row, None) for row in expected
        ]
    assert from_hub.record() == from_files.record()  # task.json: the same task, the same labels


@needs_datasets
def test_labels_are_matched_by_name_in_any_numbering_and_logged_in_one_line(tmp_path, caplog):
    folder = write_glue_task(tmp_path / "glue", "mnli")
    saved = tmp_path / "mnli-saved"
    hub_dataset("mnli", folder).save_to_disk(str(saved))
    with caplog.at_level(logging.INFO, logger="pipeline.hub_dataset"):
        task, reference = open_task("mnli", None, dataset=str(saved))
    lines = [r.getMessage() for r in caplog.records if "matched by name" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].endswith(
        "0:entailment -> 1:entailment, 1:neutral -> 2:neutral, 2:contradiction -> 0:contradiction"
    )
    # MRPC in a numbering of its own: equivalent 0, not_equivalent 1.
    mrpc = write_glue_task(tmp_path / "glue", "mrpc")
    other = tmp_path / "mrpc-saved"
    hub_dataset("mrpc", mrpc, names=("equivalent", "not_equivalent")).save_to_disk(str(other))
    task, reference = open_task("mrpc", None, dataset=str(other))
    expected = [e.label for e in TASKS["mrpc"].get_examples(mrpc, "train")]
    assert [e.label for e in task.get_examples(reference, "train")] == expected


@needs_datasets
def test_label_names_that_are_not_the_tasks_are_refused_naming_both(tmp_path):
    folder = write_glue_task(tmp_path / "glue", "mnli")
    saved = tmp_path / "saved"
    dataset = hub_dataset("mnli", folder)
    dataset = dataset.cast_column(
        "label", type(dataset["train"].features["label"])(names=["yes", "maybe", "no"])
    )
    dataset.save_to_disk(str(saved))
    with pytest.raises(ValueError, match=r"label names yes, maybe, no do not match task mnli's labels "
                       r"contradiction, entailment, neutral"):  # fmt: skip
        open_task("mnli", None, dataset=str(saved))


def with_teacher(model, tmp_path, num_labels=3):
    """A random teacher (its own dev score near chance: the check is off) in a distillation JSON."""
    teacher_config = write_bert_config(
        tmp_path / "teacher.json", num_hidden_layers=2, hidden_size=32, dropout=0.1
    )
    from modeling import BertForGLUESimple

    torch.manual_seed(0)
    config = parse_model_config(
        write_model_json(tmp_path / "t.json", [], model_entry(model["vocab"], teacher_config))
    )
    torch.save(
        BertForGLUESimple(config.student.bert_config, num_labels).state_dict(), tmp_path / "teacher.pkl"
    )
    teacher = model_entry(model["vocab"], teacher_config, tmp_path / "teacher.pkl")
    return write_model_json(
        tmp_path / "distill.json", [teacher], model_entry(model["vocab"], model["config"])
    )


@needs_datasets
def test_mnli_from_the_hubs_layout_distils_the_same_student_as_from_glues_files(model, tmp_path):
    folder = write_glue_task(tmp_path / "glue", "mnli")
    saved = tmp_path / "mnli-saved"
    hub_dataset("mnli", folder).save_to_disk(str(saved))
    distill = with_teacher(model, tmp_path)
    extra = ["--do_test", "--teacher_check_size", "0"]
    files = train(distill, ["--data_dir", str(folder)], tmp_path / "files", *extra)
    hub = train(distill, ["--dataset", str(saved)], tmp_path / "hub", *extra)
    assert_same_runs(files, hub, ("eval_results.txt", "eval_results.jsonl", "MNLI-m.tsv", "MNLI-mm.tsv"))
    # predict.py: the same submission files and scores from the dataset's splits as from the files.
    checkpoint = ["--model_config_json", distill, "--checkpoint", str(files)]
    predict.main(["test", *checkpoint, "--data_dir", str(folder), "--output_dir", str(tmp_path / "p1")])
    predict.main(["test", *checkpoint, "--dataset", str(saved), "--output_dir", str(tmp_path / "p2")])
    for name in ("MNLI-m.tsv", "MNLI-mm.tsv"):
        assert (
            (tmp_path / "p1" / name).read_text()
            == (tmp_path / "p2" / name).read_text()
            == (files / name).read_text()
        )


@needs_datasets
@pytest.mark.parametrize("task", ["rte", "sts-b"])
def test_rte_and_sts_b_from_the_hubs_parquet_files_train_the_same_student(model, tmp_path, task):
    folder = write_glue_task(tmp_path / "glue", task)
    hub = write_parquet_folder(hub_dataset(task, folder), tmp_path / "hub", HUB[task][0])
    extra = ["--task_name", task, "--do_test"]
    files = train(model["json"], ["--data_dir", str(folder)], tmp_path / "files", *extra)
    from_hub = train(model["json"], ["--dataset", str(hub)], tmp_path / "from-hub", *extra)
    submission = f"{folder.name}.tsv"
    assert_same_runs(files, from_hub, ("eval_results.txt", submission, "task.json"))


CATEGORIES = {"entailment": "tech", "neutral": "billing", "contradiction": "shipping"}


def write_custom_files(folder, rng):
    """train/dev/test.csv of your own: text, other, category (three labels, by a rule)."""
    folder.mkdir()
    rows = {}
    for split, n in (("train", 40), ("dev", 15), ("test", 7)):
        rows[split] = [(a, b, CATEGORIES[y]) for a, b, y in (make_pair(rng) for _ in range(n))]
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "other", "category"][: 2 if split == "test" else 3])
            writer.writerows(row[: 2 if split == "test" else 3] for row in rows[split])
    return rows


@needs_datasets
def test_your_own_dataset_with_a_class_label_trains_as_your_files(model, tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rows = write_custom_files(tmp_path / "mine", random.Random(5))
    names = ["tech", "shipping", "billing"]  # not sorted: the task's order is the files' (sorted)
    features = Features(
        {"text": Value("string"), "other": Value("string"), "category": ClassLabel(names=names)}
    )
    dataset = DatasetDict({
        split: Dataset.from_dict({"text": [r[0] for r in rows[name]], "other": [r[1] for r in rows[name]],
                                  "category": [names.index(r[2]) if split != "test" else -1 for r in rows[name]]},
                                 features=features)
        for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))
    })  # fmt: skip
    dataset.save_to_disk(str(tmp_path / "saved"))
    columns = ["--task_name", "custom", "--text_b_column", "other", "--label_column", "category", "--do_test"]
    files = train(model["json"], ["--data_dir", str(tmp_path / "mine")], tmp_path / "files", *columns)
    hub = train(model["json"], ["--dataset", str(tmp_path / "saved")], tmp_path / "hub", *columns)
    assert_same_runs(files, hub, ("eval_results.txt", "predictions.tsv", "task.json"))
    assert json.loads((hub / "task.json").read_text())["labels"] == ["billing", "shipping", "tech"]


@needs_datasets
def test_another_revision_of_the_dataset_rebuilds_its_features(model, tmp_path, caplog):
    folder = write_glue_task(tmp_path / "glue", "rte")
    dataset = hub_dataset("rte", folder)
    saved, cache = tmp_path / "saved", tmp_path / "cache"
    dataset.save_to_disk(str(saved))
    tokenizer_entry = parse_model_config(model["json"]).student

    def train_features():
        task, reference = open_task("rte", None, dataset=str(saved))
        return FeatureReader(task, reference, LENGTH, str(cache)).split("train", tokenizer_entry)

    first = train_features()["labels"].clone()
    with caplog.at_level(logging.INFO, logger="pipeline.feature_cache"):
        assert torch.equal(train_features()["labels"], first)
    assert "Loading cached features" in caplog.text and "Building" not in caplog.text
    # A new revision: the first example's label flipped, the texts the same.
    labels = list(dataset["train"]["label"])
    labels[0] = 1 - labels[0]
    revised = (
        dataset["train"]
        .remove_columns("label")
        .add_column("label", labels, feature=dataset["train"].features["label"])
    )
    shutil.rmtree(saved)
    dataset.__class__({**dataset, "train": revised}).save_to_disk(str(saved))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.feature_cache"):
        second = train_features()["labels"]
    assert "data_fingerprint" in caplog.text and "rebuilding" in caplog.text
    assert second[0] != first[0] and torch.equal(second[1:], first[1:])
    assert len(list(cache.glob("rte-train-*.safetensors"))) == 1  # replaced, not orphaned


@needs_datasets
@pytest.mark.parametrize(
    "change, message",
    [
        ("split", r"unknown split\(s\) dev; task rte reads the splits train, validation, test"),
        (
            "column",
            r"split train: no column 'sentence2' \(the task reads sentence1, sentence2, label; "
            r"the split has sentence1, hypothesis, label, idx\)",
        ),  # fmt: skip
        ("unlabelled", r"split validation, row 2: no label \(-1\) in a labelled split"),
    ],
)
def test_a_bad_dataset_stops_the_run_before_anything_is_written(model, tmp_path, change, message):
    folder = write_glue_task(tmp_path / "glue", "rte")
    dataset = hub_dataset("rte", folder)
    if change == "split":
        dataset = dataset.__class__({"train": dataset["train"], "dev": dataset["validation"]})
    elif change == "column":
        dataset = dataset.rename_column("sentence2", "hypothesis")
    else:
        labels = list(dataset["validation"]["label"])
        labels[2] = -1
        validation = dataset["validation"].remove_columns("label")
        dataset["validation"] = validation.add_column(
            "label", labels, feature=dataset["train"].features["label"]
        )
    dataset.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=message):
        train(model["json"], ["--dataset", str(tmp_path / "saved")], tmp_path / "out", "--task_name", "rte")
    assert not (tmp_path / "out").exists()


@needs_datasets
def test_a_split_the_run_reads_is_named_before_the_model_config(tmp_path):
    """MNLI without its mismatched dev split: --do_eval reads it, so the run stops before the
    model config is read (here there is none) and writes nothing; training alone needs train."""
    folder = write_glue_task(tmp_path / "glue", "mnli")
    dataset = hub_dataset("mnli", folder)
    del dataset["validation_mismatched"]
    dataset.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"no split validation_mismatched, which the run reads \(the dataset has "
                       r"train, validation_matched, test_matched, test_mismatched; task mnli reads the splits "
                       r"train, validation_matched, validation_mismatched, test_matched, test_mismatched\)"):  # fmt: skip
        train(str(tmp_path / "no.json"), ["--dataset", str(tmp_path / "saved")], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    task, _ = open_task("mnli", None, dataset=str(tmp_path / "saved"))
    task.check_splits(["train", "mnli"])
    with pytest.raises(ValueError, match=r"no split validation_mismatched,"):
        task.check_splits(["train", "mnli-mm"])


@needs_datasets
def test_a_regression_tasks_label_must_be_a_score(tmp_path):
    folder = write_glue_task(tmp_path / "glue", "sts-b")
    dataset = hub_dataset("sts-b", folder, names=None)
    from datasets import ClassLabel

    labels = [int(y > 2.5) for y in dataset["train"]["label"]]
    train = (
        dataset["train"]
        .remove_columns("label")
        .add_column("label", labels, feature=ClassLabel(names=["low", "high"]))
    )
    dataset.__class__({**dataset, "train": train}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"split train: task sts-b is a regression: its label column 'label' must "
                       r"hold scores, not ClassLabel"):  # fmt: skip
        open_task("sts-b", None, dataset=str(tmp_path / "saved"))


@needs_datasets
def test_a_label_column_with_one_value_is_refused(model, tmp_path):
    from datasets import Dataset, DatasetDict

    one = {"text": ["a dog runs .", "a cat sleeps ."], "label": [7, 7]}
    DatasetDict({"train": Dataset.from_dict(one), "validation": Dataset.from_dict(one)}).save_to_disk(
        str(tmp_path / "d")
    )
    with pytest.raises(
        ValueError, match=r"split train: the label column 'label' holds one value only \('7'\)"
    ):
        train(model["json"], ["--dataset", str(tmp_path / "d")], tmp_path / "out", "--task_name", "custom")
    assert not (tmp_path / "out").exists()


def test_without_the_datasets_library_one_line_says_how_to_install_it(model, tmp_path):
    """`datasets` hidden (a package of that name that fails to import): exit 1 and one line, before
    anything is written."""
    fake = tmp_path / "hide" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "hide"), REPO]))
    command = [sys.executable, os.path.join(REPO, "main.py"), "--dataset", "nyu-mll/glue", "--task_name", "rte",
               "--output_dir", str(tmp_path / "out"), "--model_config_json", model["json"], "--do_train"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith("not installed: pip install datasets"), result.stderr
    assert not (tmp_path / "out").exists()


@needs_datasets
def test_augment_reads_a_datasets_train_split_as_the_train_file(model, tmp_path):
    folder = write_glue_task(tmp_path / "glue", "rte")
    saved = tmp_path / "saved"
    hub_dataset("rte", folder).save_to_disk(str(saved))
    distill = with_teacher(model, tmp_path, num_labels=2)
    common = ["--model_config_json", distill, "--task_name", "rte", "--n", "2", "--seed", "3"]
    augment.main([*common, "--data_dir", str(folder), "--output", str(tmp_path / "files.tsv")])
    augment.main([*common, "--dataset", str(saved), "--output", str(tmp_path / "hub.jsonl")])
    with open(tmp_path / "files.tsv", encoding="utf-8") as f:
        expected = [
            (row["sentence1"], row["sentence2"])
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    rows = [json.loads(line) for line in (tmp_path / "hub.jsonl").read_text().splitlines()]
    assert [(row["sentence1"], row["sentence2"]) for row in rows] == expected and expected
    assert {row["label"] for row in rows} == {"-"}
    # ... and the dataset's run learns from it as a transfer set.
    train(distill, ["--dataset", str(saved)], tmp_path / "run", "--task_name", "rte", "--teacher_check_size", "0",
          "--transfer_file", str(tmp_path / "hub.jsonl"), "--num_train_epochs", "1")  # fmt: skip
    assert checkpoint_steps(tmp_path / "run")
