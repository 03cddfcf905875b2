"""A tiny trained student, exported as a Hugging Face folder and used without this repository's
model code; GLUE submission files from a run (--do_test) and from predict.py."""

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

import export
import main
import predict
from pipeline.data import feature_batches
from pipeline.evaluation import predict_outputs
from pipeline.trained_models import load_exported, load_from_json
from tests.helpers import write_bert_config, write_tiny_mnli, write_tiny_mnli_test, write_vocab
from utils_glue import LABELS, TASKS, convert_examples_to_features, read_mnli_test_tsv, read_mnli_tsv

MAX_LENGTH = 24


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A student trained on labels for 2 epochs, with --do_test and --export_dir."""
    root = tmp_path_factory.mktemp("export")
    data = write_tiny_mnli(root / "data", n_train=64, n_dev=24)
    test_labels = write_tiny_mnli_test(data, n_test=10)
    # An upper-case word: the exported tokenizer must keep do_lower_case=false.
    vocab = write_vocab(
        root / "vocab.txt",
        words=["the", "dog", "Dog", "runs", "park", ".", "a", "cat", "sleeps", "not", "does", "in"],
    )
    config = write_bert_config(
        root / "student.json", num_hidden_layers=2, hidden_size=16, intermediate_size=32, dropout=0.1
    )
    model_json = root / "alone.json"
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
                    "tokenizer_kwargs": {"do_lower_case": False},
                },
            }
        )
    )
    output_dir, export_dir = root / "out", root / "student-hf"
    main.run(
        [
            "--data_dir",
            str(data),
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            str(model_json),
            "--do_train",
            "--do_eval",
            "--do_test",
            "--export_dir",
            str(export_dir),
            "--max_seq_length",
            str(MAX_LENGTH),
            "--train_batch_size",
            "16",
            "--num_train_epochs",
            "2",
            "--learning_rate",
            "3e-3",
        ]
    )
    return {
        "root": root,
        "data": data,
        "json": str(model_json),
        "out": output_dir,
        "export": export_dir,
        "vocab": vocab,
        "test_labels": test_labels,
    }


def project_probabilities(trained, examples):
    """The project's own evaluation path: its tokenizer, features and BertForGLUESimple."""
    features = convert_examples_to_features(examples, LABELS, MAX_LENGTH, trained.tokenizer, labelled=False)
    return predict_outputs(trained.model, feature_batches(features, 8), "cpu")


def test_export_folder_holds_a_hugging_face_classifier(run):
    folder = run["export"]
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"} <= set(
        os.listdir(folder)
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "contradiction", "1": "entailment", "2": "neutral"}
    assert config["label2id"] == {"contradiction": 0, "entailment": 1, "neutral": 2}
    assert (folder / "vocab.txt").read_text() == run["vocab"].read_text()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab_lines = run["vocab"].read_text().splitlines()
    # Cased, and every token maps to its line of vocab.txt.
    assert tokenizer.convert_ids_to_tokens(tokenizer("Dog dog")["input_ids"]) == [
        "[CLS]",
        "Dog",
        "dog",
        "[SEP]",
    ]
    assert [tokenizer.convert_tokens_to_ids(token) for token in vocab_lines] == list(range(len(vocab_lines)))


def test_exported_model_predicts_as_the_projects_evaluation(run):
    """AutoModelForSequenceClassification and pipeline give the project's probabilities, pair for pair."""
    newest = max(int(name[2:-4]) for name in os.listdir(run["out"]) if name.endswith(".pkl"))
    ours = load_from_json(run["json"], checkpoint=str(run["out"]))
    assert ours.source.endswith(f"gs{newest}.pkl")
    examples = read_mnli_tsv(str(run["data"] / "dev_matched.tsv"))
    expected = project_probabilities(ours, examples)
    # The run's own evaluation of that checkpoint saw the same predictions.
    gold = np.array([LABELS.index(e.label) for e in examples])
    recorded = json.loads((run["out"] / "eval_results.jsonl").read_text().splitlines()[-1])
    assert recorded["step"] == newest
    assert recorded["acc"]["mnli"] == pytest.approx(float((expected.argmax(1) == gold).mean()))

    hf_model = AutoModelForSequenceClassification.from_pretrained(run["export"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(run["export"])
    encoded = tokenizer(
        [e.text_a for e in examples], [e.text_b for e in examples], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        hf_probabilities = torch.softmax(hf_model(**encoded).logits, dim=-1).numpy()
    np.testing.assert_allclose(hf_probabilities, expected, atol=1e-5)

    classify = pipeline("text-classification", model=str(run["export"]), device="cpu")
    answers = classify([{"text": e.text_a, "text_pair": e.text_b} for e in examples])
    assert [a["label"] for a in answers] == [LABELS[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([a["score"] for a in answers], expected.max(1), atol=1e-5)


def test_a_teacher_exports_the_same_way(run, tmp_path):
    """export.py --which teacher0 with the JSON's own checkpoint gives the weights of the run's
    --export_dir (here the trained model stands as the teacher of a distillation JSON)."""
    entry = json.loads(open(run["json"]).read())["student"]
    final = max(run["out"].glob("gs*.pkl"), key=lambda path: int(path.stem[2:]))
    model_json = tmp_path / "distill.json"
    model_json.write_text(json.dumps({"teachers": [dict(entry, checkpoint=str(final))], "student": entry}))
    export.main(
        [
            "--model_config_json",
            str(model_json),
            "--which",
            "teacher0",
            "--output_dir",
            str(tmp_path / "teacher-hf"),
        ]
    )
    teacher, first = load_exported(str(tmp_path / "teacher-hf")), load_exported(str(run["export"]))
    assert teacher.source.endswith("teacher-hf")
    for key, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, teacher.model.state_dict()[key]), key


def test_export_refuses_a_folder_of_other_files(run, tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as stop:
        export.main(
            [
                "--model_config_json",
                run["json"],
                "--checkpoint",
                str(run["out"]),
                "--output_dir",
                str(tmp_path),
            ]
        )
    assert stop.value.code == 1
    assert "holds files but no exported model" in caplog.text
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_checkpoint_without_classifier_is_refused(run, tmp_path):
    state = torch.load(run["out"] / "gs8.pkl", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.")}, tmp_path / "cut.pkl")
    with pytest.raises(ValueError, match=r"cut.pkl: lacks 2 of the .* classifier.bias"):
        load_from_json(run["json"], checkpoint=str(tmp_path / "cut.pkl"))


def read_submission(path):
    lines = path.read_text().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def test_do_test_writes_glue_submission_files(run):
    ours = load_from_json(run["json"], checkpoint=str(run["out"]))
    for name, test_file in TASKS["mnli"].test_sets.items():
        header, rows = read_submission(run["out"] / f"{name}.tsv")
        assert header == "index\tprediction"
        examples = read_mnli_test_tsv(str(run["data"] / test_file))
        assert [index for index, _ in rows] == [e.guid for e in examples] == [str(i) for i in range(10)]
        expected = project_probabilities(ours, examples).argmax(1)
        assert [label for _, label in rows] == [LABELS[i] for i in expected]


def test_predict_cli_from_the_exported_folder_writes_the_same_files(run, tmp_path):
    predict.main(
        [
            "test",
            "--model",
            str(run["export"]),
            "--data_dir",
            str(run["data"]),
            "--output_dir",
            str(tmp_path),
            "--max_seq_length",
            str(MAX_LENGTH),
        ]
    )
    for name in TASKS["mnli"].test_sets:
        assert (tmp_path / f"{name}.tsv").read_text() == (run["out"] / f"{name}.tsv").read_text()


def test_a_bad_test_file_stops_the_run_before_training(run, tmp_path, caplog):
    data = write_tiny_mnli(tmp_path / "data", n_train=16, n_dev=8)
    write_tiny_mnli_test(data, n_test=3)
    path = data / "test_mismatched.tsv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [lines[2] + "\textra"] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match=r"test_mismatched.tsv, line 3: expected 10 tab-separated columns"):
        main.run(
            [
                "--data_dir",
                str(data),
                "--output_dir",
                str(tmp_path / "out"),
                "--model_config_json",
                run["json"],
                "--do_train",
                "--do_test",
                "--max_seq_length",
                str(MAX_LENGTH),
            ]
        )
    assert not (tmp_path / "out").exists()
