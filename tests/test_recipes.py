"""--recipe: a named set of option defaults that explicit options override, from main.py and the scripts."""
import os
import subprocess

import pytest

from options import build_parser, parse_args
from recipes import RECIPES, compact

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED = ["--data_dir", "d", "--output_dir", "o", "--model_config_json", "m.json", "--do_train"]


def test_published_recipe_is_textbrewers_defaults():
    args = parse_args(REQUIRED)
    assert args.recipe == "published"
    assert (args.temperature, args.hard_label_weight, args.kd_loss_weight,
            args.intermediate_weight, args.init_student_from_teacher) == (8.0, 0.0, 1.0, 1.0, False)


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
    env = dict(os.environ, PYTHON=str(stub), ARGS_FILE=str(tmp_path / "args"),
               OUTPUT_ROOT_DIR=str(tmp_path / "out"), **variables)
    subprocess.run(["bash", os.path.join(REPO, script)], env=env, check=True)
    return (tmp_path / "args").read_text().splitlines()


@pytest.mark.parametrize("script", ["run_mnli_distill_T4tiny.sh", "run_mnli_distill_T4tiny_emd.sh",
                                    "run_mnli_distill_multiteacher.sh"])
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
    chosen = script_args(tmp_path, recording_python, script, recipe="recommended", temperature="3",
                         lr="1e-3")
    assert chosen[chosen.index("--temperature") + 1] == "3"
    assert chosen[chosen.index("--learning_rate") + 1] == "1e-3"


def test_numbers_print_as_a_shell_variable_holds_them():
    assert [compact(v) for v in (5e-4, 1e-4, 2e-5, 2.0, 0.5, 8, True)] == [
        "5e-4", "1e-4", "2e-5", "2.0", "0.5", "8", "True"]
    assert float(compact(1.2345678e-4)) == 1.2345678e-4  # never rounded
