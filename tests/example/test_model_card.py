"""The model card (README.md) of an exported folder: the Hub's metadata header and a body whose
every figure is the model's own or its run's (run.json, eval_results.jsonl, teacher_check.json),
and that says what is unknown where the run kept no record."""

import json
import shlex
import shutil

import pytest
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, pipeline

import export
import main
from distillation import checkpoint_steps
from pipeline.trained_models import load_from_json
from tests.helpers import model_entry, write_bert_config, write_model_json, write_tiny_mnli, write_vocab

LENGTH = 24


def common(data, model_json, output_dir, learning_rate="1e-3"):
    return ["--data_dir", str(data), "--output_dir", str(output_dir), "--model_config_json", model_json,
            "--max_seq_length", str(LENGTH), "--train_batch_size", "8", "--learning_rate", learning_rate]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A teacher trained on the labels (two checkpoints an epoch), and a student distilled from
    it with --export_dir."""
    root = tmp_path_factory.mktemp("card")
    data = write_tiny_mnli(root / "data", n_train=64, n_dev=12)
    vocab = write_vocab(root / "vocab.txt")
    teacher_config = write_bert_config(
        root / "teacher.json", num_hidden_layers=2, hidden_size=32, dropout=0.1
    )
    student_config = write_bert_config(
        root / "student.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32, dropout=0.1
    )
    teacher_json = write_model_json(root / "train.json", [], model_entry(vocab, teacher_config))
    # It learns the rule midway: its checkpoints' scores differ.
    main.run(common(data, teacher_json, root / "teacher", "5e-3") + ["--do_train", "--do_eval", "--ckpt_frequency",
             "2", "--num_train_epochs", "4", "--warmup_proportion", "0"])  # fmt: skip
    teacher_checkpoint = root / "teacher" / f"gs{checkpoint_steps(root / 'teacher')[-1]}.pkl"
    distill_json = write_model_json(
        root / "distill.json",
        [model_entry(vocab, teacher_config, teacher_checkpoint)],
        model_entry(vocab, student_config),
    )
    argv = common(data, distill_json, root / "student") + [
        "--do_train", "--do_eval", "--num_train_epochs", "1", "--temperature", "4", "--teacher_check_size", "10",
        "--allow_weak_teacher", "--export_dir", str(root / "student-hf")]  # fmt: skip
    main.run(argv)
    return {"root": root, "data": data, "teacher_json": teacher_json, "teacher_checkpoint": teacher_checkpoint,
            "distill_json": distill_json, "argv": argv}  # fmt: skip


def read_card(folder):
    card = ModelCard.load(folder / "README.md")
    return card.data, card.text


def records(run_folder):
    lines = (run_folder / "eval_results.jsonl").read_text().splitlines()
    return {record["step"]: record for record in map(json.loads, lines)}


def model_index(data):
    """{(metric name, split): value} of the card's model-index results."""
    return {(r.metric_name, r.dataset_split): r.metric_value for r in data.eval_results or []}


def expected_index(record, files=(("mnli", "dev_matched"), ("mnli-mm", "dev_mismatched"))):
    """What the model-index holds of an eval_results.jsonl record; its splits are the dev files'
    names where the run recorded them, else the dev sets'."""
    files = dict(files)
    return {(f"accuracy ({name})", files[name]): m["acc"] for name, m in record["metrics"].items()}


def parameters(model):
    return sum(parameter.numel() for parameter in model.parameters())


def test_the_students_card_carries_the_runs_own_figures(runs):
    folder = runs["root"] / "student-hf"
    data, text = read_card(folder)
    assert (data.library_name, data.pipeline_tag) == ("transformers", "text-classification")
    assert "mnli" in data.tags and "knowledge-distillation" in data.tags
    final = records(runs["root"] / "student")
    step = max(final)
    assert model_index(data) == expected_index(final[step]) and len(final[step]["metrics"]) == 2
    assert f"## Dev scores (step {step})" in text
    assert f"| mnli (dev_matched) | {final[step]['metrics']['mnli']['acc']:.4f} |" in text
    # The model as the Hub loads it: its shape and parameters are the card's.
    hf_model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert f"| parameters | {parameters(hf_model):,} " in text
    assert "| layers | 1 |" in text and "| hidden size | 16 |" in text
    assert "3 labels, in the order of its outputs: contradiction, entailment, neutral" in text
    # The teacher: its checkpoint, size, and its own scores in the teacher check.
    teacher = load_from_json(runs["teacher_json"], checkpoint=str(runs["teacher_checkpoint"]))
    check = json.loads((runs["root"] / "student" / "teacher_check.json").read_text())
    scores = check["teachers"][0]["scores"]
    assert (
        f"| teachers[0] | {runs['teacher_checkpoint']} | 2 | 32 | {parameters(teacher.model):,} | "
        f"{scores['mnli']:.4f} | {scores['mnli-mm']:.4f} |" in text
    )
    assert (
        "Distilled from 1 teacher by GeneralDistiller (recipe `published`), starting from random weights."
        in text
    )
    for row in ("| temperature | 4.0 |", "| learning_rate | 0.001 |", "| num_train_epochs | 1.0 |"):
        assert row in text
    assert shlex.join(runs["argv"]) in text  # the command that produced it
    classify = pipeline("text-classification", model=str(folder), device="cpu")
    assert classify({"text": "the dog runs .", "text_pair": "a dog runs ."})["label"] in (
        "contradiction",
        "entailment",
        "neutral",
    )


def test_an_earlier_checkpoint_carries_the_scores_of_its_own_step(runs, tmp_path):
    steps = checkpoint_steps(runs["root"] / "teacher")
    evaluated = records(runs["root"] / "teacher")
    assert evaluated[steps[0]]["metrics"] != evaluated[steps[-1]]["metrics"]  # a step of its own
    first = runs["root"] / "teacher" / f"gs{steps[0]}.pkl"
    export.main(["--model_config_json", runs["teacher_json"], "--checkpoint", str(first), "--output_dir",
                 str(tmp_path / "teacher-hf")])  # fmt: skip
    data, text = read_card(tmp_path / "teacher-hf")
    assert model_index(data) == expected_index(evaluated[steps[0]])
    assert f"## Dev scores (step {steps[0]})" in text
    assert (
        "Trained on the gold labels alone (BasicTrainer, no teacher), starting from random weights." in text
    )
    assert "| temperature |" not in text and "knowledge-distillation" not in data.tags


def test_a_checkpoint_away_from_its_run_says_what_is_unknown(runs, tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(runs["teacher_checkpoint"], loose / runs["teacher_checkpoint"].name)
    export.main(["--model_config_json", runs["teacher_json"], "--checkpoint", str(loose), "--output_dir",
                 str(tmp_path / "hf")])  # fmt: skip
    data, text = read_card(tmp_path / "hf")
    assert data.eval_results is None and data.library_name == "transformers"
    assert f"Not recorded: {loose} holds no run.json" in text
    assert f"Not recorded: no evaluation of step {runs['teacher_checkpoint'].stem[2:]} in {loose}" in text
    assert "| learning_rate |" not in text and "## Dev scores (step" not in text
    # An export exported again: nothing of its run travels with it.
    export.main(["--model", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "again")])
    _, again = read_card(tmp_path / "again")
    assert f"Not recorded: {tmp_path / 'hf'} was not read from a run folder" in again


def test_a_model_evaluated_as_given_has_its_scores_and_no_recipe(runs, tmp_path):
    """--do_predict without --do_train: the JSON's checkpoint, evaluated as step 0, then exported."""
    student = json.loads(open(runs["distill_json"]).read())["student"]
    final = runs["root"] / "student" / f"gs{checkpoint_steps(runs['root'] / 'student')[-1]}.pkl"
    given = write_model_json(tmp_path / "given.json", [], dict(student, checkpoint=str(final)))
    main.run(
        common(runs["data"], given, tmp_path / "eval")
        + ["--do_predict", "--export_dir", str(tmp_path / "hf")]
    )
    data, text = read_card(tmp_path / "hf")
    assert model_index(data) == expected_index(
        records(tmp_path / "eval")[0], {"mnli": "mnli", "mnli-mm": "mnli-mm"}
    )
    assert "## Dev scores (step 0)" in text
    assert (
        f"evaluated as given in {tmp_path / 'eval'}, not trained there" in text
        and "| learning_rate |" not in text
    )
