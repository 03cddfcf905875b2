"""Every bad input stops main.py with one clear line, a non-zero exit, no traceback, and
nothing in the output directory that could be taken for results."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from tests.helpers import (
    LABELS,
    read_repo_text,
    write_bert_config,
    write_constant_classifier,
    write_tiny_mnli,
    write_vocab,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    vocab = write_vocab(root / "vocab.txt")
    teacher_config = write_bert_config(root / "teacher.json", num_hidden_layers=4, hidden_size=32)
    student_config = write_bert_config(
        root / "student.json", num_hidden_layers=2, hidden_size=16, intermediate_size=32
    )
    sys.path.insert(0, REPO)
    data = write_tiny_mnli(root / "data", n_train=32, n_dev=8)
    # The teacher always answers the train set's most frequent label (counted here; the first
    # in the task's order on a tie, as the check breaks ties): it scores the teacher check's
    # baseline exactly, under its bar on every run.
    train_labels = [line.split("\t")[-1] for line in (data / "train.tsv").read_text().splitlines()[1:]]
    majority = max(LABELS, key=train_labels.count)
    write_constant_classifier(root / "teacher.pkl", teacher_config, LABELS.index(majority))
    return {
        "root": root,
        "vocab": str(vocab),
        "teacher_config": str(teacher_config),
        "student_config": str(student_config),
        "teacher_ckpt": str(root / "teacher.pkl"),
        "data": str(data),
    }


def entry(base, config="student_config", checkpoint=None, vocab=None):
    return {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": vocab or base["vocab"],
        "config_file": base[config],
        "checkpoint": checkpoint,
    }


def distill_config(base, **teacher_changes):
    teacher = dict(entry(base, "teacher_config", base["teacher_ckpt"]), **teacher_changes)
    return {"teachers": [teacher], "student": entry(base)}


def run_main(base, tmp_path, model_config, *extra, data_dir=None):
    model_json = tmp_path / "model.json"
    if isinstance(model_config, str):
        model_json.write_text(model_config)
    else:
        model_json.write_text(json.dumps(model_config))
    output_dir = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "main.py"),
            "--data_dir",
            data_dir or base["data"],
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            str(model_json),
            "--do_train",
            "--do_eval",
            "--max_seq_length",
            "24",
            "--train_batch_size",
            "8",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not output_dir.exists() or not os.listdir(output_dir)
    return result.stderr


def broken_data(tmp_path, file_name, edit):
    data_dir = write_tiny_mnli(tmp_path / "data", n_train=16, n_dev=8)
    path = data_dir / file_name
    path.write_text(edit(path.read_text()))
    return str(data_dir)


def test_missing_tsv(base, tmp_path):
    data_dir = write_tiny_mnli(tmp_path / "data")
    os.remove(data_dir / "train.tsv")
    assert "train.tsv" in run_main(base, tmp_path, distill_config(base), data_dir=str(data_dir))


def test_empty_tsv(base, tmp_path):
    data_dir = broken_data(tmp_path, "dev_matched.tsv", lambda text: "")
    assert "dev_matched.tsv" in run_main(base, tmp_path, distill_config(base), data_dir=data_dir)


def test_row_with_too_few_columns(base, tmp_path):
    def cut(text):
        lines = text.splitlines()
        lines[3] = "\t".join(lines[3].split("\t")[:5])
        return "\n".join(lines) + "\n"

    stderr = run_main(base, tmp_path, distill_config(base), data_dir=broken_data(tmp_path, "train.tsv", cut))
    assert "train.tsv" in stderr and "line 4" in stderr


def test_unknown_gold_label(base, tmp_path):
    def relabel(text):
        lines = text.splitlines()
        lines[2] = lines[2].rsplit("\t", 1)[0] + "\tmaybe"
        return "\n".join(lines) + "\n"

    stderr = run_main(
        base, tmp_path, distill_config(base), data_dir=broken_data(tmp_path, "train.tsv", relabel)
    )
    assert "'maybe'" in stderr and "line 3" in stderr


def test_malformed_json(base, tmp_path):
    assert "invalid JSON" in run_main(base, tmp_path, '{"teachers": [,]}')


def test_missing_key(base, tmp_path):
    config = distill_config(base)
    del config["student"]["config_file"]
    assert "student: missing key(s) config_file" in run_main(base, tmp_path, config)


def test_wrong_type(base, tmp_path):
    assert "teachers[0].disable: expected true/false, got 'no'" in run_main(
        base, tmp_path, distill_config(base, disable="no")
    )


def test_checkpoint_that_does_not_fit_the_config(base, tmp_path):
    config = distill_config(base, config_file=base["student_config"])
    stderr = run_main(base, tmp_path, config)
    assert "does not fit the model's config" in stderr and "teacher.pkl" in stderr


def test_a_teacher_with_another_vocabulary_and_matches(base, tmp_path):
    other_vocab = write_vocab(tmp_path / "other_vocab.txt", words=["a", "b", "c"])
    stderr = run_main(
        base,
        tmp_path,
        distill_config(base, vocab_file=str(other_vocab)),
        *_one_match(base, tmp_path)["extra"],
    )
    assert "teachers[0] reads another vocabulary than the student" in stderr
    assert "other_vocab.txt" in stderr and "intermediate matches" in stderr


def test_max_seq_length_beyond_the_position_embeddings(base, tmp_path):
    assert "exceeds the student's max_position_embeddings 64" in run_main(
        base, tmp_path, distill_config(base), "--max_seq_length", "65"
    )


def test_batch_not_divisible_by_accumulation(base, tmp_path):
    assert "not divisible" in run_main(
        base, tmp_path, distill_config(base), "--gradient_accumulation_steps", "3"
    )


def test_unknown_matches_name_lists_the_known_ones(base, tmp_path):
    stderr = run_main(base, tmp_path, distill_config(base), "--matches", "L4t_hiden_mse")
    assert "unknown preset 'L4t_hiden_mse'" in stderr and "L4t_hidden_mse" in stderr


def test_layer_index_out_of_range(base, tmp_path):
    # L6 presets need a 6-layer student; this one has 2.
    assert "out of range" in run_main(base, tmp_path, distill_config(base), "--matches", "L3_hidden_mse")


def test_projection_that_does_not_fit(base, tmp_path):
    matches = tmp_path / "matches.json"
    matches.write_text(
        json.dumps(
            [
                {
                    "layer_S": 1,
                    "layer_T": 2,
                    "feature": "hidden",
                    "loss": "hidden_mse",
                    "weight": 1,
                    "proj": ["linear", 16, 768],
                }
            ]
        )
    )
    assert "does not fit the models" in run_main(
        base, tmp_path, distill_config(base), "--matches", str(matches)
    )


def test_output_dir_that_cannot_be_written(base, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "main.py"),
            "--data_dir",
            base["data"],
            "--output_dir",
            str(blocker / "out"),
            "--model_config_json",
            str(_write(tmp_path / "m.json", distill_config(base))),
            "--do_train",
            "--max_seq_length",
            "24",
            "--train_batch_size",
            "8",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "cannot be created" in result.stderr


def _write(path, content):
    path.write_text(json.dumps(content))
    return path


# ----- README's error table, row by row, through the command line --------------------------------


def readme_error_fragments():
    """The backticked message fragments of docs/reliability.md's table '| message contains | meaning |'."""
    text = read_repo_text("docs/reliability.md")
    table = text[text.index("| message contains |") :]
    table = table[: table.index("\n\n")] if "\n\n" in table else table  # the table ends at a blank line
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    return [fragment for row in rows for fragment in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def fragment_pattern(fragment):
    """N stands for a number, 'x' for a quoted value, $X for a variable's name, X for a path."""
    pattern = re.escape(fragment)
    pattern = re.sub(r"\bN\b", r"\\d+", pattern)
    pattern = pattern.replace(re.escape("'x'"), "'[^']+'").replace(re.escape("$X"), r"\$\w+")
    return re.sub(r"\bX\b", r"\\S+", pattern)


def _cut_row(text):
    lines = text.splitlines()
    lines[3] = "\t".join(lines[3].split("\t")[:5])
    return "\n".join(lines) + "\n"


def _relabel(text):
    lines = text.splitlines()
    lines[2] = lines[2].rsplit("\t", 1)[0] + "\tmaybe"
    return "\n".join(lines) + "\n"


def _without_train(tmp_path):
    data_dir = write_tiny_mnli(tmp_path / "data", n_train=16, n_dev=8)
    os.remove(data_dir / "train.tsv")
    return str(data_dir)


def _teacher_without_classifier(base, tmp_path):
    state = torch.load(base["teacher_ckpt"], weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier")}, tmp_path / "bare.pkl")
    return distill_config(base, checkpoint=str(tmp_path / "bare.pkl"))


def _student_with_foreign_keys(base, tmp_path):
    torch.save({"decoder.weight": torch.zeros(2, 2)}, tmp_path / "foreign.pkl")
    config = distill_config(base)
    config["student"]["checkpoint"] = str(tmp_path / "foreign.pkl")
    return config


def _wrong_projection(base, tmp_path):
    matches = tmp_path / "matches.json"
    matches.write_text(
        json.dumps(
            [
                {
                    "layer_S": 1,
                    "layer_T": 2,
                    "feature": "hidden",
                    "loss": "hidden_mse",
                    "weight": 1,
                    "proj": ["linear", 16, 768],
                }
            ]
        )
    )
    return {"extra": ["--matches", str(matches)]}


def _one_match(base, tmp_path):
    matches = tmp_path / "one_match.json"
    matches.write_text(
        json.dumps([{"layer_S": 1, "layer_T": 2, "feature": "hidden", "loss": "hidden_mse", "weight": 1}])
    )
    return {"extra": ["--matches", str(matches)]}


def _teacher_folder_with_placeholder_labels(base, tmp_path):
    """A Hugging Face folder whose config.json names the rows LABEL_0..LABEL_2."""
    from safetensors.torch import save_file
    from transformers import BertConfig

    folder = tmp_path / "hub_teacher"
    folder.mkdir()
    config = BertConfig.from_json_file(base["teacher_config"])
    config.num_labels = 3  # id2label: LABEL_0, LABEL_1, LABEL_2
    config.save_pretrained(folder)
    save_file(torch.load(base["teacher_ckpt"], weights_only=True), folder / "model.safetensors")
    return {"model_config": distill_config(base, checkpoint=str(folder))}


def _custom_data(tmp_path, train, dev="text,label\nc,x\n"):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "train.csv").write_text(train)
    if dev is not None:
        (folder / "dev.csv").write_text(dev)
    return {"data_dir": str(folder), "extra": ["--task_name", "custom"]}


def _unwritable_output_dir(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root writes anywhere: take a folder no one can write to
        folder = "/proc/self"
        if not os.path.isdir(folder) or os.access(folder, os.W_OK):
            pytest.skip("no folder here that this user cannot write to")
    return str(folder)


# fragment -> how to provoke it: changes to run_main's arguments (model config, extra options,
# data_dir, output_dir) made from (base, tmp_path).
ERROR_CASES = {
    "--data_dir X: no such folder": lambda base, tmp: {"data_dir": str(tmp / "nowhere")},
    "--data_dir X: no X/train.tsv": lambda base, tmp: {"data_dir": _without_train(tmp)},
    "no train file": lambda base, tmp: (
        _custom_data(tmp, "text,label\na,x\n", dev=None) | {"data_dir": str(tmp)}
    ),
    "the header lacks the column(s)": lambda base, tmp: _custom_data(tmp, "sentence,label\na,x\n"),
    "holds one value only": lambda base, tmp: _custom_data(tmp, "text,label\na,x\nb,x\n"),
    "is not among the labels of the train file": lambda base, tmp: _custom_data(
        tmp, "text,label\na,x\nb,y\n", dev="text,label\nc,z\n"
    ),
    "label_order: expected a list of label names": lambda base, tmp: {
        "model_config": distill_config(base, label_order="contradiction")
    },
    "do not map onto the task's labels": _teacher_folder_with_placeholder_labels,
    "teacher check failed": lambda base, tmp: {},  # the base teacher answers the baseline's label
    "reads another vocabulary than the student": lambda base, tmp: {
        "model_config": distill_config(base, vocab_file=str(write_vocab(tmp / "v.txt", words=["a"]))),
        **_one_match(base, tmp),
    },
    "empty file": lambda base, tmp: {"data_dir": broken_data(tmp, "dev_matched.tsv", lambda text: "")},
    "line N: expected N tab-separated columns": lambda base, tmp: {
        "data_dir": broken_data(tmp, "train.tsv", _cut_row)
    },
    "unknown gold_label 'x'": lambda base, tmp: {"data_dir": broken_data(tmp, "train.tsv", _relabel)},
    "invalid JSON at line N": lambda base, tmp: {"model_config": '{"teachers": [,]}'},
    "missing key(s)": lambda base, tmp: {
        "model_config": dict(
            distill_config(base), student={k: v for k, v in entry(base).items() if k != "config_file"}
        )
    },
    "expected true/false": lambda base, tmp: {"model_config": distill_config(base, disable="no")},
    "environment variable $X is not set": lambda base, tmp: {
        "model_config": distill_config(base, vocab_file="${MNLI_TEST_UNSET_VARIABLE}/vocab.txt")
    },
    "does not fit the model's config": lambda base, tmp: {
        "model_config": distill_config(base, config_file=base["student_config"])
    },
    "lacks N of the model's N tensors": lambda base, tmp: {
        "model_config": _teacher_without_classifier(base, tmp)
    },
    "none of its N tensors matches the encoder": lambda base, tmp: {
        "model_config": _student_with_foreign_keys(base, tmp)
    },
    "exceeds the student's max_position_embeddings": lambda base, tmp: {"extra": ["--max_seq_length", "65"]},
    "not divisible by --gradient_accumulation_steps": lambda base, tmp: {
        "extra": ["--gradient_accumulation_steps", "3"]
    },
    "unknown preset": lambda base, tmp: {"extra": ["--matches", "L4t_hiden_mse"]},
    "out of range": lambda base, tmp: {"extra": ["--matches", "L3_hidden_mse"]},
    "does not fit the models": _wrong_projection,
    "cannot be created": lambda base, tmp: {"output_dir": str(_write(tmp / "a_file", {}) / "out")},
    "cannot be written": lambda base, tmp: {"output_dir": _unwritable_output_dir(tmp)},
}


def test_every_row_of_the_readme_error_table_has_a_case():
    assert sorted(readme_error_fragments()) == sorted(ERROR_CASES)


@pytest.mark.parametrize("fragment", sorted(ERROR_CASES))
def test_readme_error_table_row(base, tmp_path, fragment):
    """The README's fragment appears in the one error line main.py prints, with a non-zero exit,
    no traceback, and nothing written to the output folder."""
    case = ERROR_CASES[fragment](base, tmp_path)
    output_dir = case.get("output_dir", str(tmp_path / "out"))
    before = set(os.listdir(output_dir)) if os.path.isdir(output_dir) else None
    model_json = tmp_path / "model.json"
    config = case.get("model_config", distill_config(base))
    model_json.write_text(config if isinstance(config, str) else json.dumps(config))
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "main.py"),
            "--data_dir",
            case.get("data_dir", base["data"]),
            "--output_dir",
            output_dir,
            "--model_config_json",
            str(model_json),
            "--do_train",
            "--do_eval",
            "--max_seq_length",
            "24",
            "--train_batch_size",
            "8",
            *case.get("extra", []),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "MNLI_TEST_UNSET_VARIABLE"},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    error_lines = [
        line for line in result.stderr.splitlines() if " ERROR " in line or line.startswith("main.py: error:")
    ]
    assert len(error_lines) == 1, result.stderr[-2000:]
    assert re.search(fragment_pattern(fragment), error_lines[0]), error_lines[0]
    after = set(os.listdir(output_dir)) if os.path.isdir(output_dir) else None
    assert after == before or (before is None and after == set())
