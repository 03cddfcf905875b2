"""main.py and main.emd.py end to end on a tiny generated corpus: train, distill, predict."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import main
from pipeline.data import batch_loader
from pipeline.recipes import RECIPES
from pipeline.student_init import init_student_from_teacher
from tests.helpers import model_entry, run_main_emd, write_bert_config, write_tiny_mnli, write_vocab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULT_LINE = re.compile(r"^step: (\d+) Acc:mnli=0\.\d{5} mnli-mm=0\.\d{5} All=0\.\d{5}$")


def entry(files, config, checkpoint=None):
    return model_entry(files["vocab"], files[config], checkpoint)


def write_json(path, content):
    path.write_text(json.dumps(content))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("main")
    return {
        "root": root,
        "data": write_tiny_mnli(root / "data", n_train=64, n_dev=24),
        "vocab": write_vocab(root / "vocab.txt"),
        "teacher_config": write_bert_config(
            root / "teacher.json", num_hidden_layers=4, hidden_size=32, intermediate_size=64
        ),
        "student_config": write_bert_config(
            root / "student.json", num_hidden_layers=2, hidden_size=16, intermediate_size=32
        ),
    }


def args(files, output_dir, model_json, *extra):
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
        "2",
        "--learning_rate",
        "1e-3",
        "--PRINT_EVERY",
        "2",
        "--allow_weak_teacher",
        *extra,
    ]


def result_lines(output_dir):
    with open(os.path.join(output_dir, "eval_results.txt")) as f:
        return [line.rstrip("\n") for line in f]


def reevaluate(files, config, checkpoint, output_dir):
    """The accuracies `--do_predict` gives the checkpoint now: 'mnli=... mnli-mm=... All=...'."""
    model_json = write_json(
        output_dir.parent / f"{output_dir.name}.json",
        {"teachers": [], "student": entry(files, config, str(checkpoint))},
    )
    main.run(
        [
            "--data_dir",
            str(files["data"]),
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            model_json,
            "--do_predict",
            "--max_seq_length",
            "24",
        ]
    )
    (line,) = result_lines(output_dir)
    return line.split("Acc:")[1]


def assert_results_are_the_checkpoints(files, config, output_dir, steps, tmp_path):
    """eval_results.txt has one line per checkpoint, at exactly `steps`, and each line's
    accuracies are those of its own checkpoint evaluated again (not of another model or step).
    Both sides go through the same evaluation: what the numbers are (each dev set scored on its
    own file, All their mean, each task's metric) is for test_evaluation.py's hand count
    (test_each_dev_set_is_scored_on_its_own_file_and_all_is_their_mean) and test_tasks.py."""
    lines = result_lines(output_dir)
    assert [RESULT_LINE.match(line).group(1) for line in lines] == [str(step) for step in steps]
    records = [json.loads(line) for line in open(os.path.join(output_dir, "eval_results.jsonl"))]
    assert [record["step"] for record in records] == list(steps)
    for line, record in zip(lines, records):
        acc = record["acc"]
        assert line.split("Acc:")[1] == (
            f"mnli={acc['mnli']:.5f} mnli-mm={acc['mnli-mm']:.5f} All={acc['All']:.5f}"
        )
    for step, line in zip(steps, lines):
        again = reevaluate(
            files,
            config,
            os.path.join(output_dir, f"gs{step}.pkl"),
            tmp_path / f"again_{os.path.basename(output_dir)}_{step}",
        )
        assert line.split("Acc:")[1] == again, step


@pytest.fixture(scope="module")
def teacher_checkpoint(files):
    """Train the teacher once: no enabled teacher in the JSON -> the student trains on labels."""
    model_json = write_json(
        files["root"] / "teacher_run.json", {"teachers": [], "student": entry(files, "teacher_config")}
    )
    output_dir = files["root"] / "teacher_out"
    main.run(args(files, output_dir, model_json))
    return output_dir


def test_teacher_training_writes_checkpoints_and_results(teacher_checkpoint):
    # 64 examples, batch 16 -> 4 steps per epoch, one checkpoint per epoch.
    assert {f for f in os.listdir(teacher_checkpoint) if f.endswith(".pkl")} == {"gs4.pkl", "gs8.pkl"}
    lines = result_lines(teacher_checkpoint)
    assert [RESULT_LINE.match(line).group(1) for line in lines] == ["4", "8"]
    records = [json.loads(line) for line in open(teacher_checkpoint / "eval_results.jsonl")]
    assert [r["step"] for r in records] == [4, 8]
    assert set(records[0]["acc"]) == {"mnli", "mnli-mm", "All"}
    state = torch.load(teacher_checkpoint / "gs8.pkl", weights_only=True)
    assert "classifier.weight" in state and "bert.encoder.layer.3.output.dense.weight" in state


def test_teacher_results_are_its_checkpoints_evaluated(files, teacher_checkpoint, tmp_path):
    # 64 pairs and 8 steps do not teach a tiny BERT the rule reliably (it lands anywhere
    # around the majority class), so the accuracies are checked against the checkpoints instead.
    assert_results_are_the_checkpoints(files, "teacher_config", teacher_checkpoint, [4, 8], tmp_path)


def distill_json(files, teacher_checkpoint, name, teachers=1):
    teacher = entry(files, "teacher_config", str(teacher_checkpoint / "gs8.pkl"))
    return write_json(
        files["root"] / name, {"teachers": [teacher] * teachers, "student": entry(files, "student_config")}
    )


def test_general_distillation_with_matches_file(files, teacher_checkpoint, tmp_path):
    matches = write_json(
        tmp_path / "matches.json",
        [
            {"layer_S": 0, "layer_T": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1},
            {"layer_S": 2, "layer_T": 4, "feature": "hidden", "loss": "hidden_mse", "weight": 1},
            {"layer_S": [2, 2], "layer_T": [4, 4], "feature": "hidden", "loss": "mmd", "weight": 1},
            {"layer_S": 1, "layer_T": 3, "feature": "attention", "loss": "attention_mse", "weight": 1},
        ],
    )
    output_dir = tmp_path / "t4"
    main.run(
        args(
            files,
            output_dir,
            distill_json(files, teacher_checkpoint, "d.json"),
            "--matches",
            matches,
            "--temperature",
            "4",
        )
    )
    assert {"gs4.pkl", "gs8.pkl"} <= set(os.listdir(output_dir))
    assert_results_are_the_checkpoints(files, "student_config", output_dir, [4, 8], tmp_path)
    logged = [json.loads(line) for line in open(output_dir / "metrics.jsonl")]
    assert "unweighted_hidden_hidden_mse_2_4" in logged[-1]
    assert "unweighted_attention_attention_mse_1_3" in logged[-1]


def test_emd_distillation(files, teacher_checkpoint, tmp_path):
    output_dir = tmp_path / "emd"
    run_main_emd(args(files, output_dir, distill_json(files, teacher_checkpoint, "e.json")))
    assert {"gs4.pkl", "gs8.pkl"} <= set(os.listdir(output_dir))
    assert_results_are_the_checkpoints(files, "student_config", output_dir, [4, 8], tmp_path)
    logged = [json.loads(line) for line in open(output_dir / "metrics.jsonl")]
    assert "unweighted_hidden_hidden_mse_emd" in logged[-1]


def test_multi_teacher_distillation(files, teacher_checkpoint, tmp_path):
    output_dir = tmp_path / "multi"
    main.run(
        args(
            files,
            output_dir,
            distill_json(files, teacher_checkpoint, "m.json", teachers=2),
            "--ckpt_frequency",
            "2",
        )
    )
    # Two checkpoints per epoch: steps 2, 4, 6, 8.
    assert {f"gs{step}.pkl" for step in (2, 4, 6, 8)} <= set(os.listdir(output_dir))
    assert_results_are_the_checkpoints(files, "student_config", output_dir, [2, 4, 6, 8], tmp_path)


@pytest.mark.parametrize(
    "epochs, frequency, steps", [("1.5", "2", [2, 4, 6]), ("1.5", "1", [4, 6]), ("0.5", "4", [1, 2])]
)
def test_fractional_epochs_honour_ckpt_frequency(files, epochs, frequency, steps, tmp_path):
    # 64 examples, batch 16: 4 steps per epoch. 1.5 epochs = 6 steps; --ckpt_frequency 2 is a
    # checkpoint every 2 steps, 1 every 4, and always one at the last step.
    model_json = write_json(
        tmp_path / "alone.json", {"teachers": [], "student": entry(files, "student_config")}
    )
    output_dir = tmp_path / "fraction"
    argv = args(files, output_dir, model_json, "--ckpt_frequency", frequency)
    argv[argv.index("--num_train_epochs") + 1] = epochs
    main.run(argv)
    assert sorted(int(f[2:-4]) for f in os.listdir(output_dir) if re.fullmatch(r"gs\d+\.pkl", f)) == steps
    assert [int(RESULT_LINE.match(line).group(1)) for line in result_lines(output_dir)] == steps


def test_predict_only_evaluates_the_students_checkpoint(files, teacher_checkpoint, tmp_path):
    model_json = write_json(
        tmp_path / "p.json",
        {"teachers": [], "student": entry(files, "teacher_config", str(teacher_checkpoint / "gs8.pkl"))},
    )
    output_dir = tmp_path / "predict"
    main.run(
        [
            "--data_dir",
            str(files["data"]),
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            model_json,
            "--do_predict",
            "--max_seq_length",
            "24",
        ]
    )
    (line,) = result_lines(output_dir)
    # The same weights give the same accuracies as the teacher's own last evaluation.
    assert line.split("Acc:")[1] == result_lines(teacher_checkpoint)[-1].split("Acc:")[1]


def run_main_cli(*argv):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "main.py"), *argv], capture_output=True, text=True, cwd=REPO
    )


def test_user_errors_exit_with_one_clear_line(files, teacher_checkpoint, tmp_path):
    model_json = distill_json(files, teacher_checkpoint, "err.json")
    output_dir = tmp_path / "never"
    result = run_main_cli(*args(files, output_dir, model_json, "--matches", "L4_hiden_mse"))
    assert result.returncode != 0
    assert "unknown preset 'L4_hiden_mse'" in result.stderr and "Traceback" not in result.stderr
    assert not output_dir.exists()

    result = run_main_cli(*args(files, output_dir, model_json, "--max_seq_length", "100"))
    assert result.returncode != 0 and "max_position_embeddings 64" in result.stderr
    assert not output_dir.exists()

    result = run_main_cli(*args(files, output_dir, model_json, "--gradient_accumulation_steps", "3"))
    assert result.returncode != 0 and "not divisible" in result.stderr


def test_matches_without_a_teacher_is_an_error(files, tmp_path):
    model_json = write_json(
        tmp_path / "alone.json", {"teachers": [], "student": entry(files, "student_config")}
    )
    with pytest.raises(ValueError, match="--matches needs a teacher"):
        main.run(args(files, tmp_path / "out", model_json, "--matches", "L3_hidden_mse"))


def test_worker_processes_load_the_same_batches(files, teacher_checkpoint, tmp_path):
    # Dropout on: a worker process that moved the main process's generator would change the masks.
    dropout_config = write_bert_config(
        tmp_path / "student_dropout.json",
        num_hidden_layers=2,
        hidden_size=16,
        intermediate_size=32,
        dropout=0.1,
    )
    teacher = entry(files, "teacher_config", str(teacher_checkpoint / "gs8.pkl"))
    student = {**entry(files, "student_config"), "config_file": str(dropout_config)}
    model_json = write_json(tmp_path / "w.json", {"teachers": [teacher], "student": student})
    states = []
    for workers in ("0", "2"):
        output_dir = tmp_path / f"workers{workers}"
        main.run(args(files, output_dir, model_json, "--num_workers", workers))
        states.append(torch.load(output_dir / "gs8.pkl", weights_only=True))
    for key, value in states[0].items():
        assert torch.equal(states[1][key], value), key


def test_recommended_recipe_starts_from_the_teacher(files, teacher_checkpoint, tmp_path, monkeypatch):
    calls = []

    def recording_init(student, teacher, sample):
        calls.append((student, teacher, sample))
        return init_student_from_teacher(student, teacher, sample)

    monkeypatch.setattr(main, "init_student_from_teacher", recording_init)
    seen = {}

    def build(args_, train_config, teachers, student, matches):
        seen["models"] = (student, teachers[0])
        seen["args"] = args_
        seen["distiller"] = main.build_distiller(args_, train_config, teachers, student, matches)
        return seen["distiller"]

    matches = write_json(
        tmp_path / "matches.json",
        [
            {"layer_S": s, "layer_T": t, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
            for s, t in ((0, 0), (1, 2), (2, 4))
        ],
    )
    output_dir = tmp_path / "recommended"
    main.run(
        args(
            files,
            output_dir,
            distill_json(files, teacher_checkpoint, "r.json"),
            "--recipe",
            "recommended",
            "--matches",
            matches,
        ),
        build_distiller=build,
    )
    assert RECIPES["recommended"]["init_student_from_teacher"]
    [(student, teacher, sample)] = calls
    assert (student, teacher) == seen["models"]
    assert sample["input_ids"].shape == (64, 24)  # every one of the 64 training examples
    config = seen["distiller"].d_config
    # The recipe's values, and main.py's default kd_loss_weight 1 where the recipe sets none.
    assert (config.temperature, config.hard_label_weight, config.kd_loss_weight) == (2.0, 1.0, 1.0)
    assert {key: RECIPES["recommended"][key] for key in ("temperature", "hard_label_weight")} == {
        "temperature": 2.0,
        "hard_label_weight": 1.0,
    }
    assert seen["args"].learning_rate == 1e-3  # given on the command line: it beats the recipe's 5e-4
    weight = RECIPES["recommended"].get("intermediate_weight", 1.0)
    assert [match.weight for match in config.intermediate_matches] == [weight] * 3
    logged = [json.loads(line) for line in open(output_dir / "metrics.jsonl")]
    assert "unweighted_hard_label_loss" in logged[-1]


def test_embedding_init_needs_a_teacher(files, tmp_path):
    model_json = write_json(
        tmp_path / "alone.json", {"teachers": [], "student": entry(files, "student_config")}
    )
    with pytest.raises(ValueError, match="--init_student_from_teacher needs a teacher"):
        main.run(args(files, tmp_path / "out", model_json, "--init_student_from_teacher"))


def test_teacher_init_refuses_to_overwrite_a_student_checkpoint(files, teacher_checkpoint, tmp_path):
    student = entry(files, "teacher_config", str(teacher_checkpoint / "gs8.pkl"))
    teacher = entry(files, "teacher_config", str(teacher_checkpoint / "gs8.pkl"))
    model_json = write_json(tmp_path / "pretrained_student.json", {"teachers": [teacher], "student": student})
    with pytest.raises(ValueError, match="would replace the student's checkpoint"):
        main.run(args(files, tmp_path / "out", model_json, "--recipe", "recommended"))
    assert not (tmp_path / "out").exists()


def test_batches_drop_the_padding_their_examples_share():
    from transformers import BertConfig, BertForSequenceClassification

    lengths = [3, 7, 5, 2, 6, 4]
    mask = torch.zeros(len(lengths), 12, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    features = {
        "input_ids": torch.randint(5, 40, mask.shape) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(mask),
        "labels": torch.arange(6) % 3,
    }
    batches = list(batch_loader(features, batch_size=3, shuffle=False))
    assert [batch["input_ids"].shape[1] for batch in batches] == [7, 6]
    assert [batch["labels"].shape for batch in batches] == [(3,), (3,)]

    # Cutting the shared padding changes no prediction.
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=3,
            attn_implementation="eager",
        )
    ).eval()
    full = {key: features[key][:3] for key in ("input_ids", "attention_mask", "token_type_ids")}
    cut = {key: batches[0][key] for key in full}
    with torch.no_grad():
        torch.testing.assert_close(model(**cut).logits, model(**full).logits)


def test_the_teachers_are_cast_only_when_teacher_dtype_says_so(tmp_path):
    """--fp16 / --bf16 keep their meaning (autocast around teachers kept as they are); a half
    teacher is the opt-in --teacher_dtype."""
    from pipeline.options import parse_args, training_config

    def dtype(*options):
        required = ["--data_dir", "d", "--output_dir", str(tmp_path), "--model_config_json", "m"]
        return training_config(parse_args([*required, "--do_train", *options]), "cuda").teacher_dtype

    assert dtype("--fp16") is None and dtype("--bf16") is None and dtype() is None
    assert dtype("--fp16", "--teacher_dtype", "bf16") == "bf16"
