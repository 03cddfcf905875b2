"""The teacher is checked before it teaches: its label order, its own score, and a teacher that
never learnt (issue: a student at chance with nothing said why)."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig

import main
from distillation import checkpoint_steps
from pipeline.label_order import rows_in_task_order
from tests.helpers import (
    LABELS,
    model_entry,
    write_bert_config,
    write_constant_classifier,
    write_counted_mnli,
    write_model_json,
    write_tiny_mnli,
    write_vocab,
)

# MNLI's rows in another order, named as the Hub's roberta-large-mnli names them.
HUB_ORDER = ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]
PERMUTATION = [LABELS.index(name.lower()) for name in HUB_ORDER]  # row i of the folder: this label


def entry(files, config, checkpoint=None, **extra):
    return model_entry(files["vocab"], files[config], checkpoint, **extra)


write_json = write_model_json


def options(files, output_dir, model_json, *extra):
    return [
        "--data_dir",
        str(files["data"]),
        "--output_dir",
        str(output_dir),
        "--model_config_json",
        model_json,
        "--do_train",
        "--do_eval",
        "--max_seq_length",
        "24",
        "--train_batch_size",
        "16",
        "--num_train_epochs",
        "1",
        "--learning_rate",
        "1e-3",
        "--PRINT_EVERY",
        "4",
        *extra,
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A corpus whose dev sets differ in size, and a teacher trained on it until it beats the
    most frequent label."""
    root = tmp_path_factory.mktemp("teacher_check")
    files = {
        "root": root,
        "data": write_tiny_mnli(root / "data", n_train=240, n_dev=30),
        "vocab": write_vocab(root / "vocab.txt"),
        "teacher_config": write_bert_config(
            root / "teacher.json", num_hidden_layers=2, hidden_size=32, dropout=0.1
        ),
        "student_config": write_bert_config(
            root / "student.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32, dropout=0.1
        ),
    }
    (files["data"] / "dev_mismatched.tsv").write_text(  # 19 pairs: another size than matched's 30
        "\n".join((files["data"] / "dev_mismatched.tsv").read_text().splitlines()[:20]) + "\n"
    )
    model_json = write_json(root / "train.json", [], entry(files, "teacher_config"))
    main.run(
        options(files, root / "teacher", model_json, "--num_train_epochs", "6", "--learning_rate", "3e-3")
    )
    files["teacher"] = str(root / "teacher" / f"gs{checkpoint_steps(root / 'teacher')[-1]}.pkl")
    return files


def permuted_folder(files, folder, id2label, order=PERMUTATION):
    """The teacher as a Hugging Face folder whose classifier row i holds the teacher's row
    order[i], and whose config.json names the rows id2label (None: LABEL_0, LABEL_1, ...)."""
    folder.mkdir()
    config = BertConfig.from_json_file(str(files["teacher_config"]))
    config.num_labels = len(LABELS)
    if id2label is not None:
        config.id2label = dict(enumerate(id2label))
        config.label2id = {name: row for row, name in enumerate(id2label)}
    config.save_pretrained(folder)
    state = torch.load(files["teacher"], weights_only=True)
    for key in ("classifier.weight", "classifier.bias"):
        state[key] = state[key][order].contiguous()
    save_file(state, str(folder / "model.safetensors"))
    return str(folder)


def distill(files, tmp_path, name, teacher, *extra):
    model_json = write_json(tmp_path / f"{name}.json", [teacher], entry(files, "student_config"))
    output_dir = tmp_path / name
    main.run(options(files, output_dir, model_json, *extra))
    final = output_dir / f"gs{checkpoint_steps(output_dir)[-1]}.pkl"
    return (
        torch.load(final, weights_only=True),
        (output_dir / "eval_results.txt").read_text().splitlines(),
        output_dir,
    )


def assert_same_student(first, second):
    state_a, lines_a, _ = first
    state_b, lines_b, _ = second
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    assert lines_a == lines_b


# ----- label order ----------------------------------------------------------------------------


def test_rows_in_task_order_matches_names_case_insensitively():
    assert rows_in_task_order(HUB_ORDER, LABELS, "x") == [0, 2, 1]  # task label i <- row order[i]
    assert rows_in_task_order(["contradiction", "entailment", "neutral"], LABELS, "x") is None
    with pytest.raises(
        ValueError,
        match=r"x: the classifier's rows are named LABEL_0, LABEL_1, "
        r"LABEL_2, which do not map .*placeholders.*\"label_order\": "
        r"\[\"contradiction\", \"entailment\", \"neutral\"\]",
    ):
        rows_in_task_order(["LABEL_0", "LABEL_1", "LABEL_2"], LABELS, "x")
    with pytest.raises(ValueError, match="the task's labels are contradiction, entailment, neutral"):
        rows_in_task_order(["contradiction", "entailment", "neutral", "other"], LABELS, "x")


def test_a_folder_with_another_label_order_distils_as_its_pkl(files, tmp_path):
    """The same teacher, its rows permuted and named so in config.json (in capitals, as the
    Hub's roberta-large-mnli), distils to a student identical to the .pkl's, bit for bit."""
    from_pkl = distill(files, tmp_path, "pkl", entry(files, "teacher_config", files["teacher"]))
    folder = permuted_folder(files, tmp_path / "hub", HUB_ORDER)
    from_folder = distill(files, tmp_path, "folder", entry(files, "teacher_config", folder))
    assert_same_student(from_pkl, from_folder)
    # The check can fail: the same rows named in the project's order (a lie) teach another student.
    lying = permuted_folder(files, tmp_path / "lying", LABELS)
    from_lie = distill(files, tmp_path, "lie", entry(files, "teacher_config", lying), "--allow_weak_teacher")
    assert not all(torch.equal(from_pkl[0][k], from_lie[0][k]) for k in from_pkl[0])


def test_placeholder_names_are_refused_and_label_order_names_the_rows(files, tmp_path):
    folder = permuted_folder(files, tmp_path / "hub", None)  # LABEL_0, LABEL_1, LABEL_2
    with pytest.raises(
        ValueError,
        match=r"config\.json: the classifier's rows are named LABEL_0, "
        r"LABEL_1, LABEL_2, which do not map",
    ):
        distill(files, tmp_path, "refused", entry(files, "teacher_config", folder))
    assert not (tmp_path / "refused").exists()
    named = distill(
        files,
        tmp_path,
        "named",
        entry(files, "teacher_config", folder, label_order=[n.lower() for n in HUB_ORDER]),
    )
    from_pkl = distill(files, tmp_path, "pkl", entry(files, "teacher_config", files["teacher"]))
    assert_same_student(named, from_pkl)


def test_label_order_serves_a_state_dict_too(files, tmp_path):
    state = torch.load(files["teacher"], weights_only=True)
    for key in ("classifier.weight", "classifier.bias"):
        state[key] = state[key][PERMUTATION]
    torch.save(state, tmp_path / "permuted.pkl")
    permuted = distill(
        files,
        tmp_path,
        "permuted",
        entry(files, "teacher_config", str(tmp_path / "permuted.pkl"), label_order=HUB_ORDER),
    )
    from_pkl = distill(files, tmp_path, "pkl", entry(files, "teacher_config", files["teacher"]))
    assert_same_student(permuted, from_pkl)


# ----- the teacher's own score -------------------------------------------------------------------


def test_the_reported_score_is_what_do_predict_gives_the_checkpoint(files, tmp_path):
    _, _, output_dir = distill(
        files,
        tmp_path,
        "run",
        entry(files, "teacher_config", files["teacher"]),
        "--teacher_check_size",
        "1000",
    )
    check = json.loads((output_dir / "teacher_check.json").read_text())
    assert check["sizes"] == {"mnli": 30, "mnli-mm": 19}
    [teacher] = check["teachers"]
    assert not teacher["weak"]
    predict_json = write_json(tmp_path / "predict.json", [], entry(files, "teacher_config", files["teacher"]))
    main.run(
        [
            "--data_dir",
            str(files["data"]),
            "--output_dir",
            str(tmp_path / "predict"),
            "--model_config_json",
            predict_json,
            "--do_predict",
            "--max_seq_length",
            "24",
        ]
    )
    record = json.loads((tmp_path / "predict" / "eval_results.jsonl").read_text())
    assert teacher["scores"] == {name: record["acc"][name] for name in ("mnli", "mnli-mm")}
    # The baseline: always the train set's most frequent label, scored on each dev set.
    train_labels = [
        line.split("\t")[-1] for line in (files["data"] / "train.tsv").read_text().splitlines()[1:]
    ]
    majority = max(LABELS, key=train_labels.count)
    assert check["baseline_label"] == majority
    for name, file in (("mnli", "dev_matched.tsv"), ("mnli-mm", "dev_mismatched.tsv")):
        gold = [line.split("\t")[-1] for line in (files["data"] / file).read_text().splitlines()[1:]]
        assert check["baseline"][name] == pytest.approx(gold.count(majority) / len(gold))
    assert "teacher_check.txt" in os.listdir(output_dir)


# Counted by hand: the train set's most frequent label is neutral (12 of 24 pairs); the dev sets
# (94 and 68 pairs) hold more entailment than neutral, and contradiction in between.
BAR_COUNTS = {
    "train.tsv": {"contradiction": 7, "entailment": 5, "neutral": 12},
    "dev_matched.tsv": {"contradiction": 31, "entailment": 33, "neutral": 30},
    "dev_mismatched.tsv": {"contradiction": 23, "entailment": 25, "neutral": 20},
}
SHARES = {  # a teacher always answering the label: its accuracy on mnli, mnli-mm
    "neutral": {"mnli": 30 / 94, "mnli-mm": 20 / 68},  # the baseline itself
    "contradiction": {"mnli": 31 / 94, "mnli-mm": 23 / 68},  # +1.1 points (under the bar), +4.4
    "entailment": {"mnli": 33 / 94, "mnli-mm": 25 / 68},  # +3.2 and +7.4 points: over it
}


def test_a_teacher_must_beat_the_train_sets_most_frequent_label_by_2_points(tmp_path):
    """Three teachers that always answer one label: at the baseline, 1.1 points over it on one
    dev set (and 4.4 on the other), and more than 2 points over it on both. The first two stop
    the run; the table holds the shares counted by hand."""
    data = write_counted_mnli(tmp_path / "data", BAR_COUNTS)
    vocab = write_vocab(tmp_path / "vocab.txt")
    config = write_bert_config(
        tmp_path / "config.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32
    )
    labels = ["neutral", "contradiction", "entailment"]
    teachers = [
        model_entry(
            vocab, config, write_constant_classifier(tmp_path / f"{label}.pkl", config, LABELS.index(label))
        )
        for label in labels
    ]
    model_json = write_json(tmp_path / "three.json", teachers, model_entry(vocab, config))
    output_dir = tmp_path / "run"
    argv = [
        "--data_dir", str(data), "--output_dir", str(output_dir), "--model_config_json", model_json,
        "--do_train", "--max_seq_length", "24", "--train_batch_size", "24", "--num_train_epochs", "1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="teacher check failed") as error:
        main.run(argv)
    first_line = str(error.value).splitlines()[0]
    assert "teachers[0]" in first_line and "teachers[1]" in first_line and "teachers[2]" not in first_line
    assert not output_dir.exists()
    main.run(argv + ["--allow_weak_teacher"])
    check = json.loads((output_dir / "teacher_check.json").read_text())
    assert check["sizes"] == {"mnli": 94, "mnli-mm": 68} and check["baseline_label"] == "neutral"
    assert check["baseline"] == pytest.approx(SHARES["neutral"])
    assert check["bar"] == pytest.approx({name: share + 0.02 for name, share in SHARES["neutral"].items()})
    for teacher, label in zip(check["teachers"], labels, strict=True):
        assert teacher["scores"] == pytest.approx(SHARES[label]), label
    assert [teacher["weak"] for teacher in check["teachers"]] == [True, True, False]


def test_a_teacher_with_random_weights_never_starts_a_run(files, tmp_path):
    torch.manual_seed(0)
    from modeling import BertForGLUESimple

    random_teacher = BertForGLUESimple(BertConfig.from_json_file(str(files["teacher_config"])), 3)
    torch.save(random_teacher.state_dict(), tmp_path / "random.pkl")
    teacher = entry(files, "teacher_config", str(tmp_path / "random.pkl"))
    with pytest.raises(
        ValueError,
        match=r"teacher check failed: teachers\[0\] .*random\.pkl\) scores "
        r".*no better than always answering .*label order.*"
        r"--allow_weak_teacher",
    ):
        distill(files, tmp_path, "refused", teacher)
    assert not (tmp_path / "refused").exists()  # no gs*.pkl, nothing at all
    _, _, output_dir = distill(files, tmp_path, "allowed", teacher, "--allow_weak_teacher")
    assert (
        checkpoint_steps(output_dir)
        and json.loads((output_dir / "teacher_check.json").read_text())["teachers"][0]["weak"]
    )


def test_each_of_several_teachers_is_checked_on_its_own_line(files, tmp_path):
    torch.manual_seed(0)
    from modeling import BertForGLUESimple

    torch.save(
        BertForGLUESimple(BertConfig.from_json_file(str(files["teacher_config"])), 3).state_dict(),
        tmp_path / "random.pkl",
    )
    teachers = [
        entry(files, "teacher_config", files["teacher"]),
        entry(files, "teacher_config", str(tmp_path / "random.pkl")),
    ]
    model_json = write_json(tmp_path / "multi.json", teachers, entry(files, "student_config"))
    with pytest.raises(ValueError) as error:
        main.run(options(files, tmp_path / "multi", model_json))
    message = str(error.value)
    assert "teachers[1]" in message.splitlines()[0] and "teachers[0]" not in message.splitlines()[0]
    table = message.splitlines()[1:]
    assert [line.split()[0] for line in table[2:]] == ["baseline", "teachers[0]", "teachers[1]"]
    assert table[3].split()[3] == "ok" and table[4].split()[3] == "WEAK"


def test_the_check_can_be_turned_off_and_costs_no_pass_over_the_training_data(files, tmp_path):
    """With --cache_teacher_logits the teacher runs once per training example: the check reads
    the dev sets only. --teacher_check_size 0: no check, no table."""
    calls = []
    teacher = entry(files, "teacher_config", files["teacher"])
    model_json = write_json(tmp_path / "cache.json", [teacher], entry(files, "student_config"))

    def build(args, train_config, teachers, student, matches):
        teachers[0].register_forward_hook(
            lambda module, args, kwargs, output: calls.append(len(kwargs["input_ids"])), with_kwargs=True
        )
        return main.build_distiller(args, train_config, teachers, student, matches)

    main.run(
        options(
            files,
            tmp_path / "cached",
            model_json,
            "--cache_teacher_logits",
            "--num_train_epochs",
            "2",
            "--teacher_check_size",
            "7",
        ),
        build_distiller=build,
    )
    assert (tmp_path / "cached" / "teacher_check.txt").exists()
    assert sum(calls) == 240 + 7 + 7  # each training pair once (epoch 1), the check's 7 + 7 dev pairs
    main.run(options(files, tmp_path / "off", model_json, "--teacher_check_size", "0"))
    assert not (tmp_path / "off" / "teacher_check.txt").exists()
