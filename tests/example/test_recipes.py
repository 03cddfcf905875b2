"""--recipe: a named set of option defaults that explicit options override, from main.py and the scripts."""

import os
import subprocess

import pytest

from pipeline.options import build_parser, parse_args
from pipeline.recipes import RECIPES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIRED = ["--data_dir", "d", "--output_dir", "o", "--model_config_json", "m.json", "--do_train"]


def test_published_recipe_is_textbrewers_defaults():
    args = parse_args(REQUIRED)
    assert args.recipe == "published"
    assert (
        args.temperature,
        args.hard_label_weight,
        args.kd_loss_weight,
        args.intermediate_weight,
        args.init_student_from_teacher,
    ) == (8.0, 0.0, 1.0, 1.0, False)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_names_real_options(name):
    options = {action.dest for action in build_parser()._actions}
    assert set(RECIPES[name]) <= options - {"recipe", "data_dir", "output_dir", "model_config_json"}


def test_recipe_sets_defaults_and_explicit_options_win():
    recommended = RECIPES["recommended"]
    args = parse_args(REQUIRED + ["--recipe", "recommended"])
    for key, value in recommended.items():
        assert getattr(args, key) == value, key
    args = parse_args(REQUIRED + ["--temperature", "3", "--recipe", "recommended"])
    assert args.temperature == 3.0


def test_unknown_recipe_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(REQUIRED + ["--recipe", "fastest"])
    assert stop.value.code != 0
    assert "recommended" in capsys.readouterr().err  # the choices are listed


@pytest.fixture
def recording_python(tmp_path):
    """A stand-in for python that writes the arguments the script passes, one per line."""
    stub = tmp_path / "python"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n')
    stub.chmod(0o755)
    return stub


def script_args(tmp_path, stub, script, **variables):
    env = dict(
        os.environ,
        PYTHON=str(stub),
        ARGS_FILE=str(tmp_path / "args"),
        OUTPUT_ROOT_DIR=str(tmp_path / "out"),
        **variables,
    )
    subprocess.run(["bash", os.path.join(REPO, script)], env=env, check=True)
    return (tmp_path / "args").read_text().splitlines()


@pytest.mark.parametrize(
    "script",
    ["run_mnli_distill_T4tiny.sh", "run_mnli_distill_T4tiny_emd.sh", "run_mnli_distill_multiteacher.sh"],
)
def test_scripts_pass_the_recipe_and_only_the_temperature_it_leaves_open(tmp_path, recording_python, script):
    published = script_args(tmp_path, recording_python, script)
    assert published[published.index("--recipe") + 1] == "published"
    assert published[published.index("--temperature") + 1] == "8"  # the original recipe's
    original_lr = "2e-5" if "multiteacher" in script else "1e-4"
    assert published[published.index("--learning_rate") + 1] == original_lr
    recommended = script_args(tmp_path, recording_python, script, recipe="recommended")
    assert recommended[recommended.index("--recipe") + 1] == "recommended"
    # The recipe's own temperature and learning rate apply.
    assert "--temperature" not in recommended and "--learning_rate" not in recommended
    chosen = script_args(tmp_path, recording_python, script, recipe="recommended", temperature="3", lr="1e-3")
    assert chosen[chosen.index("--temperature") + 1] == "3"
    assert chosen[chosen.index("--learning_rate") + 1] == "1e-3"


SCRIPTS = [
    "run_mnli_train.sh",
    "run_mnli_distill_T4tiny.sh",
    "run_mnli_distill_T4tiny_emd.sh",
    "run_mnli_distill_multiteacher.sh",
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "lr, expected", [("2", "2e-5"), ("10", "10e-5"), ("2e-5", "2e-5"), ("0.0001", "0.0001")]
)
def test_scripts_read_a_bare_integer_lr_in_units_of_1e5(tmp_path, recording_python, script, lr, expected):
    env = dict(
        os.environ,
        PYTHON=str(recording_python),
        ARGS_FILE=str(tmp_path / "args"),
        OUTPUT_ROOT_DIR=str(tmp_path / "out"),
        lr=lr,
    )
    result = subprocess.run(
        ["bash", os.path.join(REPO, script)], env=env, check=True, capture_output=True, text=True
    )
    passed = (tmp_path / "args").read_text().splitlines()
    assert passed[passed.index("--learning_rate") + 1] == expected
    assert float(expected) < 1e-3
    # The run folder names the rate in force, and the conversion is said once.
    assert f"lr{expected}_" in os.path.basename(passed[passed.index("--output_dir") + 1])
    notes = [line for line in result.stdout.splitlines() if "units of 1e-5" in line]
    assert len(notes) == (1 if lr.isdigit() else 0)


def test_a_learning_rate_above_1_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(REQUIRED + ["--learning_rate", "2"])
    assert stop.value.code != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--learning_rate 2 is above 1" in err and "2e-5" in err
    assert parse_args(REQUIRED + ["--learning_rate", "2e-5"]).learning_rate == 2e-5
    assert parse_args(REQUIRED + ["--learning_rate", "1"]).learning_rate == 1.0
