"""Every GLUE task and your own files, end to end: each task's files in GLUE's exact layout go
through training, evaluation and the submission file, and every reported number is checked
against an independent reading of the files and an independent computation of the metric."""

import csv
import json
import math
import random

import numpy as np
import pytest
import torch
from transformers import BertTokenizer

import main
from distillation import checkpoint_steps
from modeling import BertForGLUESimple
from pipeline.model_config import parse_model_config
from tests.helpers import (
    FILE_COLUMNS,
    LAYOUTS,
    N_DEV,
    N_TEST,
    N_TRAIN,
    make_pair,
    write_bert_config,
    write_glue_task,
    write_vocab,
)

LENGTH = 24

# GLUE's label spellings, in the order of the classifier's rows (None: a regression task).
LABEL_NAMES = {
    "cola": ["0", "1"],
    "sst-2": ["0", "1"],
    "mrpc": ["0", "1"],
    "sts-b": None,
    "qqp": ["0", "1"],
    "mnli": ["contradiction", "entailment", "neutral"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "wnli": ["0", "1"],
}
DEV_FILES = {"mnli": {"mnli": "dev_matched.tsv", "mnli-mm": "dev_mismatched.tsv"}}
TEST_FILES = {
    "cola": "CoLA",
    "sst-2": "SST-2",
    "mrpc": "MRPC",
    "sts-b": "STS-B",
    "qqp": "QQP",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}


def read_labelled(path, task):
    """[(text_a, text_b, label)] read with the csv module from the layout above."""
    (a, b, y), _ = FILE_COLUMNS[task]
    with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC starts with a byte-order mark
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if isinstance(a, str):
        rows = [dict(zip(rows[0], row)) for row in rows[1:]]
    return [(row[a], row[b] if b is not None else None, row[y]) for row in rows if row[y] != "-"]


def read_test(path, task):
    _, (index, a, b) = FILE_COLUMNS[task]
    with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC starts with a byte-order mark
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(row[index], row[a], row[b] if b else None) for row in rows]


def model_outputs(checkpoint, config_file, vocab, examples, num_labels):
    """The checkpoint's logits for (text_a, text_b) examples, tokenised here one by one."""
    tokenizer = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    model = BertForGLUESimple(
        parse_model_config(
            {
                "teachers": [],
                "student": {
                    "model_type": "bert",
                    "prefix": "b",
                    "vocab_file": str(vocab),
                    "config_file": str(config_file),
                    "checkpoint": None,
                },
            }
        ).student.bert_config,
        num_labels,
    )
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    outputs = []
    with torch.no_grad():
        for text_a, text_b in examples:
            encoded = tokenizer(
                text_a, text_b, truncation="longest_first", max_length=LENGTH, return_tensors="pt"
            )
            outputs.append(model(**encoded)["logits"][0])
    return torch.stack(outputs).numpy()


# The GLUE metrics written out from their definitions.
def accuracy(preds, gold):
    return float(np.mean(preds == gold))


def f1(preds, gold):
    tp = np.sum((preds == 1) & (gold == 1))
    return 0.0 if tp == 0 else 2 * tp / (np.sum(preds == 1) + np.sum(gold == 1))


def mcc(preds, gold):
    tp, tn = np.sum((preds == 1) & (gold == 1)), np.sum((preds == 0) & (gold == 0))
    fp, fn = np.sum((preds == 1) & (gold == 0)), np.sum((preds == 0) & (gold == 1))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else float((tp * tn - fp * fn) / denominator)


def pearson(x, y):
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x, y):
    def ranks(values):  # average ranks of ties
        order = np.argsort(values, kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values))
        for value in np.unique(values):
            ranked[values == value] = ranked[values == value].mean()
        return ranked

    return pearson(ranks(np.asarray(x)), ranks(np.asarray(y)))


EXPECTED_METRICS = {
    "cola": {"acc": accuracy, "mcc": mcc},
    "mrpc": {"acc": accuracy, "f1": f1},
    "qqp": {"acc": accuracy, "f1": f1},
    "sts-b": {"pearson": pearson, "spearmanr": spearman},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    vocab = write_vocab(root / "vocab.txt")
    config = write_bert_config(
        root / "config.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32, dropout=0.1
    )
    model_json = root / "model.json"
    model_json.write_text(
        json.dumps(
            {
                "teachers": [],
                "student": {
                    "model_type": "bert",
                    "prefix": "bert",
                    "vocab_file": str(vocab),
                    "config_file": str(config),
                    "checkpoint": None,
                },
            }
        )
    )
    return {"root": root, "vocab": vocab, "config": config, "json": str(model_json)}


def train(files, data_dir, output_dir, *extra):
    main.run(
        [
            "--data_dir",
            str(data_dir),
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            files["json"],
            "--do_train",
            "--do_eval",
            "--do_test",
            "--max_seq_length",
            str(LENGTH),
            "--train_batch_size",
            "8",
            "--num_train_epochs",
            "1",
            "--learning_rate",
            "1e-3",
            "--ckpt_frequency",
            "2",
            *extra,
        ]
    )
    return output_dir / f"gs{checkpoint_steps(output_dir)[-1]}.pkl"


@pytest.mark.parametrize("task", list(LAYOUTS) + ["mnli"])
def test_each_glue_task_trains_evaluates_and_writes_its_submission_file(files, tmp_path, task):
    glue_root = tmp_path / "glue"
    folder = write_glue_task(glue_root, task)
    output_dir = tmp_path / "run"
    # The data root, as the scripts pass it: the task's folder is found under it.
    checkpoint = train(files, glue_root, output_dir, "--task_name", task.upper())
    names = LABEL_NAMES[task]
    assert json.loads((output_dir / "task.json").read_text()) == {"task_name": task, "labels": names}

    # Each dev set's metrics: the saved checkpoint's predictions on that file, scored here.
    record = json.loads((output_dir / "eval_results.jsonl").read_text().splitlines()[-1])
    dev_files = DEV_FILES.get(task, {task: "dev.tsv"})
    assert list(record["metrics"]) == list(dev_files)
    for name, file in dev_files.items():
        examples = read_labelled(folder / file, task)
        outputs = model_outputs(
            checkpoint,
            files["config"],
            files["vocab"],
            [(a, b) for a, b, _ in examples],
            len(names) if names else 1,
        )
        if names is None:
            preds, gold = outputs[:, 0], np.array([float(y) for _, _, y in examples])
        else:
            preds, gold = outputs.argmax(1), np.array([names.index(y) for _, _, y in examples])
        expected = {
            metric: function(preds, gold)
            for metric, function in EXPECTED_METRICS.get(task, {"acc": accuracy}).items()
        }
        # Batched, padded evaluation against one example at a time: float32 rounding apart. A
        # correlation of near-constant outputs magnifies it, hence its looser bound.
        assert record["metrics"][name] == pytest.approx(expected, abs=1e-3 if names is None else 1e-5), name
    main_metric = "acc" if names else "pearson"
    scores = record[main_metric]
    assert scores["All"] == pytest.approx(np.mean([scores[n] for n in dev_files]))
    line = (output_dir / "eval_results.txt").read_text().splitlines()[-1]
    assert line.startswith(f"step: {record['step']} {main_metric.capitalize()}:{list(dev_files)[0]}=")
    assert all(f"{metric}=" in line for metric in EXPECTED_METRICS.get(task, {}) if metric != main_metric)

    # The submission files: 'index<TAB>prediction' in test order, GLUE's spellings, scores in 0..5.
    tests = (
        {"MNLI-m": "test_matched.tsv", "MNLI-mm": "test_mismatched.tsv"}
        if task == "mnli"
        else {TEST_FILES[task]: "test.tsv"}
    )
    for submission, file in tests.items():
        examples = read_test(folder / file, task)
        lines = (output_dir / f"{submission}.tsv").read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == len(examples) + 1
        outputs = model_outputs(
            checkpoint,
            files["config"],
            files["vocab"],
            [(a, b) for _, a, b in examples],
            len(names) if names else 1,
        )
        for row, (index, _, _), output in zip(lines[1:], examples, outputs, strict=True):
            got_index, prediction = row.split("\t")
            assert got_index == index
            if names is None:
                assert float(prediction) == pytest.approx(min(max(output[0], 0), 5), abs=1e-3)
            else:
                assert prediction == names[int(output.argmax())]


def test_sts_b_is_scored_on_its_raw_predictions_not_the_clipped_ones(files, tmp_path):
    """GLUE's STS-B submission file clips scores to 0..5; the dev metrics must not. A regressor
    whose outputs run far outside 0..5, scored by --do_predict, against scipy's Pearson and
    Spearman r of its raw outputs computed here."""
    from scipy.stats import pearsonr, spearmanr

    glue_root = tmp_path / "glue"
    folder = write_glue_task(glue_root, "sts-b")
    examples = read_labelled(folder / "dev.tsv", "sts-b")
    pairs = [(a, b) for a, b, _ in examples]
    torch.manual_seed(0)
    model = BertForGLUESimple(parse_model_config(files["json"]).student.bert_config, 1).eval()
    tokenizer = BertTokenizer(vocab=str(files["vocab"]), do_lower_case=True)
    with torch.no_grad():  # the output: the pooled vectors along their widest direction, to 2.5 +- 5
        model.bert.pooler.dense.weight.mul_(30.0)  # the random pooler's outputs, spread apart
        pooled = model.bert(**tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True,
                                        return_tensors="pt")).pooler_output  # fmt: skip
        centred = pooled - pooled.mean(dim=0)
        direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
        scale = 5.0 / float((centred @ direction).std())
        model.classifier.weight.copy_(scale * direction[None, :])
        model.classifier.bias.fill_(2.5 - scale * float(pooled.mean(dim=0) @ direction))
    checkpoint = tmp_path / "regressor.pkl"
    torch.save(model.state_dict(), checkpoint)
    model_json = tmp_path / "regressor.json"
    student = json.loads(open(files["json"]).read())["student"]
    model_json.write_text(json.dumps({"teachers": [], "student": dict(student, checkpoint=str(checkpoint))}))
    output_dir = tmp_path / "predict"
    main.run(["--data_dir", str(glue_root), "--output_dir", str(output_dir), "--model_config_json",
              str(model_json), "--do_predict", "--task_name", "sts-b", "--max_seq_length", str(LENGTH)])  # fmt: skip
    examples = read_labelled(folder / "dev.tsv", "sts-b")
    outputs = model_outputs(checkpoint, files["config"], files["vocab"], [(a, b) for a, b, _ in examples], 1)[
        :, 0
    ]
    gold = np.array([float(y) for _, _, y in examples])
    raw = {"pearson": pearsonr(outputs, gold)[0], "spearmanr": spearmanr(outputs, gold)[0]}
    clipped = np.clip(outputs, 0, 5)
    # The fixture tells the two apart: outputs on both sides of 0..5, whose r clipping moves by
    # 20 times the tolerance below (that of batched against one-by-one outputs, as above).
    assert outputs.min() < 0 and outputs.max() > 5
    assert abs(pearsonr(clipped, gold)[0] - raw["pearson"]) > 0.02
    assert abs(spearmanr(clipped, gold)[0] - raw["spearmanr"]) > 0.02
    record = json.loads((output_dir / "eval_results.jsonl").read_text())
    assert record["metrics"]["sts-b"] == pytest.approx(raw, abs=1e-3)
    assert record["pearson"] == pytest.approx({"sts-b": raw["pearson"], "All": raw["pearson"]}, abs=1e-3)


def test_regression_kd_is_the_mse_of_the_outputs_without_temperature(files):
    """STS-B: KD is the mean squared error between the student's and the teacher's one output,
    whatever --temperature says; the hard-label term is the MSE against the gold scores."""
    from distillation import BasicDistiller, TrainingConfig
    from pipeline.options import distillation_config, parse_args

    args = parse_args(
        [
            "--data_dir",
            "d",
            "--output_dir",
            "o",
            "--model_config_json",
            "m",
            "--do_train",
            "--task_name",
            "sts-b",
            "--temperature",
            "8",
            "--hard_label_weight",
            "0.5",
        ]
    )
    torch.manual_seed(0)
    student = BertForGLUESimple(parse_model_config(files["json"]).student.bert_config, 1)
    config = distillation_config(args, student)
    assert (config.kd_loss_type, config.temperature) == ("mse", 1)
    distiller = BasicDistiller(TrainingConfig(device="cpu"), config, student, student, None, None)
    logits_S = torch.tensor([[1.0], [2.5], [4.0]])
    logits_T = torch.tensor([[1.5], [2.0], [1.0]])
    gold = torch.tensor([1.0, 3.0, 4.5])
    hard = torch.nn.functional.mse_loss(logits_S[:, 0], gold)
    total, terms = distiller.compute_prediction_loss(
        {"logits": [logits_S], "losses": [hard]}, {"logits": [logits_T]}
    )
    by_hand = ((0.5**2 + 0.5**2 + 3.0**2) / 3, ((0.0 + 0.5**2 + 0.5**2) / 3))
    assert terms["unweighted_kd_loss"].item() == pytest.approx(by_hand[0])
    assert total.item() == pytest.approx(by_hand[0] + 0.5 * by_hand[1])


def test_an_sts_b_teacher_distils_into_a_regressor(files, tmp_path):
    glue_root = tmp_path / "glue"
    write_glue_task(glue_root, "sts-b")
    teacher = train(files, glue_root, tmp_path / "teacher", "--task_name", "sts-b")
    distill_json = tmp_path / "distill.json"
    model = json.loads(open(files["json"]).read())["student"]
    distill_json.write_text(
        json.dumps({"teachers": [dict(model, checkpoint=str(teacher))], "student": model})
    )
    main.run(
        [
            "--data_dir",
            str(glue_root),
            "--output_dir",
            str(tmp_path / "student"),
            "--model_config_json",
            str(distill_json),
            "--do_train",
            "--do_eval",
            "--task_name",
            "sts-b",
            "--max_seq_length",
            str(LENGTH),
            "--train_batch_size",
            "8",
            "--num_train_epochs",
            "1",
            "--matches",
            str(write_one_match(tmp_path)),
            "--allow_weak_teacher",
        ]
    )
    metrics = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert all("unweighted_kd_loss" in m and "unweighted_hidden_hidden_mse_1_1" in m for m in metrics)
    check = json.loads((tmp_path / "student" / "teacher_check.json").read_text())
    assert check["metric"] == "pearson" and check["baseline_label"] is None


def write_one_match(tmp_path):
    path = tmp_path / "match.json"
    path.write_text(
        json.dumps([{"layer_S": 1, "layer_T": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1}])
    )
    return path


# ----- your own files --------------------------------------------------------------------------


def write_custom(folder, kind, rng, with_test=True):
    """train/dev/test in CSV or JSON Lines, columns premise, hypothesis, category (text labels)."""
    folder.mkdir(parents=True)
    names = {"entailment": "agree", "neutral": "unrelated", "contradiction": "disagree"}
    for split, n in (("train", N_TRAIN), ("dev", N_DEV), ("test", N_TEST)):
        if split == "test" and not with_test:
            continue
        pairs = [make_pair(rng) for _ in range(n)]
        # Commas, quotes and a line break inside a field: CSV quotes them, JSON escapes them.
        pairs[1] = ('the dog said "wait , here"\nand waits .', pairs[1][1], pairs[1][2])
        rows = [{"premise": a, "hypothesis": b, "category": names[y]} for a, b, y in pairs]
        if split == "test":
            rows = [{k: v for k, v in row.items() if k != "category"} for row in rows]
        if kind == "csv":
            with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def read_custom(folder, split, kind):
    """[(premise, hypothesis, category or None)] of write_custom's file, read with csv / json."""
    if kind == "csv":
        with open(folder / f"{split}.csv", newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    else:
        records = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().split("\n") if line]
    return [(r["premise"], r["hypothesis"], r.get("category")) for r in records]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_your_own_files_end_to_end(files, tmp_path, kind):
    folder = write_custom(tmp_path / "mine", kind, random.Random(3))
    output_dir = tmp_path / "run"
    columns = [
        "--task_name",
        "custom",
        "--text_a_column",
        "premise",
        "--text_b_column",
        "hypothesis",
        "--label_column",
        "category",
    ]
    checkpoint = train(files, folder, output_dir, *columns, "--export_dir", str(tmp_path / "hf"))
    labels = ["agree", "disagree", "unrelated"]  # the train file's labels, sorted
    record = json.loads((output_dir / "task.json").read_text())
    assert record == {
        "task_name": "custom",
        "labels": labels,
        "text_a_column": "premise",
        "text_b_column": "hypothesis",
        "label_column": "category",
    }
    # The dev metrics against the checkpoint, read and scored here.
    dev = read_custom(folder, "dev", kind)
    outputs = model_outputs(checkpoint, files["config"], files["vocab"], [(a, b) for a, b, _ in dev], 3)
    gold = np.array([labels.index(y) for _, _, y in dev])
    result = json.loads((output_dir / "eval_results.jsonl").read_text().splitlines()[-1])
    assert result["acc"]["custom"] == pytest.approx(accuracy(outputs.argmax(1), gold))
    predictions = (output_dir / "predictions.tsv").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == N_TEST + 1
    test = read_custom(folder, "test", kind)
    outputs = model_outputs(checkpoint, files["config"], files["vocab"], [(a, b) for a, b, _ in test], 3)
    assert predictions[1:] == [f"{i}\t{labels[int(row.argmax())]}" for i, row in enumerate(outputs)]
    exported = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert exported["id2label"] == {str(i): label for i, label in enumerate(labels)}


def test_predict_py_reads_the_labels_of_a_custom_run(files, tmp_path):
    import subprocess
    import sys

    folder = write_custom(tmp_path / "mine", "csv", random.Random(4), with_test=False)
    output_dir = tmp_path / "run"
    main.run(
        [
            "--data_dir",
            str(folder),
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            files["json"],
            "--do_train",
            "--max_seq_length",
            str(LENGTH),
            "--train_batch_size",
            "8",
            "--num_train_epochs",
            "1",
            "--task_name",
            "custom",
            "--text_a_column",
            "premise",
            "--text_b_column",
            "hypothesis",
            "--label_column",
            "category",
        ]
    )
    pairs = tmp_path / "new.jsonl"
    pairs.write_text(json.dumps({"premise": "the dog runs .", "hypothesis": "a dog runs ."}) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "predict.py",
            "pairs",
            "--model_config_json",
            files["json"],
            "--checkpoint",
            str(output_dir),
            str(pairs),
        ],
        capture_output=True,
        text=True,
        cwd=main.__file__.rsplit("/", 1)[0],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "label\tagree\tdisagree\tunrelated"


def test_numeric_json_labels_are_one_label_whatever_their_spelling(tmp_path):
    from pipeline.custom_task import CustomTask

    (tmp_path / "train.jsonl").write_text(
        '{"text": "a", "label": 1}\n{"text": "b", "label": 2.0}\n{"text": "c", "label": 10}\n'
    )
    (tmp_path / "dev.jsonl").write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": "2"}\n')
    task = CustomTask.from_files(tmp_path, "text", "label")
    assert task.labels == ("1", "2", "10")  # numbers in numeric order
    assert [e.label for e in task.get_examples(tmp_path, "custom")] == ["1", "2"]


def test_a_cache_built_for_other_columns_is_not_reused(files, tmp_path):
    """The same file read through another label column: the features are built again."""
    folder = tmp_path / "mine"
    folder.mkdir()
    rows = "text,old,new\nthe dog runs .,x,y\nthe cat sleeps .,y,x\nthe man eats .,x,y\n"
    (folder / "train.csv").write_text(rows)
    (folder / "dev.csv").write_text(rows)
    labels = {}
    for column in ("old", "new"):
        main.run(["--data_dir", str(folder), "--output_dir", str(tmp_path / column), "--model_config_json",
                  files["json"], "--do_train", "--max_seq_length", str(LENGTH), "--num_train_epochs", "1",
                  "--task_name", "custom", "--label_column", column])  # fmt: skip
        from pipeline.data import FeatureReader
        from pipeline.tasks import open_task

        task, data_dir = open_task("custom", str(folder), {"label_column": column})
        reader = FeatureReader(task, data_dir, LENGTH, str(folder / "cache"))
        student = parse_model_config(files["json"]).student
        labels[column] = reader.split("train", student)["labels"].tolist()
    assert labels == {"old": [0, 1, 0], "new": [1, 0, 1]}
