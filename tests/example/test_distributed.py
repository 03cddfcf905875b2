"""main.py under torchrun: two CPU processes (gloo) train like one process with the same global batch."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import main
from modeling import BertForGLUESimple
from pipeline.model_config import parse_model_config
from tests.helpers import (
    TENSORBOARD_REASON,
    counting_teacher_calls,
    disk_hook_env,
    event_files,
    has_tensorboard,
    tensorboard_scalars,
    wait_for,
    write_bert_config,
    write_tiny_mnli,
    write_vocab,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def model_entry(vocab, config, checkpoint=None):
    return {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": str(vocab),
        "config_file": str(config),
        "checkpoint": checkpoint,
        "tokenizer_kwargs": {"do_lower_case": True},
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny corpus, a random teacher checkpoint and the model JSON of a GeneralDistiller run."""
    root = tmp_path_factory.mktemp("distributed")
    data = write_tiny_mnli(root / "data", n_train=32, n_dev=8)
    vocab = write_vocab(root / "vocab.txt")
    teacher_config = write_bert_config(root / "teacher.json", num_hidden_layers=2, hidden_size=32)
    student_config = write_bert_config(
        root / "student.json", num_hidden_layers=2, hidden_size=16, intermediate_size=32
    )
    teacher_json = root / "teacher_only.json"
    teacher_json.write_text(json.dumps({"teachers": [], "student": model_entry(vocab, teacher_config)}))
    torch.manual_seed(3)
    teacher = BertForGLUESimple(parse_model_config(str(teacher_json)).student.bert_config, 3)
    torch.save(teacher.state_dict(), root / "teacher.pkl")
    model_json = root / "model.json"
    model_json.write_text(
        json.dumps(
            {
                "teachers": [model_entry(vocab, teacher_config, str(root / "teacher.pkl"))],
                "student": model_entry(vocab, student_config),
            }
        )
    )
    # Dropout on, for the tests of random state: each process's generators must be restored.
    dropout_student = write_bert_config(
        root / "student_dropout.json", num_hidden_layers=2, hidden_size=16, intermediate_size=32, dropout=0.1
    )
    dropout_json = root / "model_dropout.json"
    dropout_json.write_text(
        json.dumps(
            {
                "teachers": [model_entry(vocab, teacher_config, str(root / "teacher.pkl"))],
                "student": model_entry(vocab, dropout_student),
            }
        )
    )
    # A match with a projection (student 16 -> teacher 32): its gradients are averaged too. pkd
    # is a mean over examples, so shards of a batch average to the whole batch's value (a mean
    # over tokens would weight the shards by their token counts).
    matches = root / "matches.json"
    matches.write_text(
        json.dumps([{"layer_T": 2, "layer_S": 2, "feature": "hidden", "loss": "pkd", "weight": 1}])
    )
    return {
        "root": root,
        "data": data,
        "model_json": model_json,
        "matches": matches,
        "dropout_json": dropout_json,
    }


def train(setup, name, nproc, accumulation=1, extra=(), backend=None):
    """main.py's GeneralDistiller run on nproc processes; backend: torch.compile's backend
    for --compile (in extra), set in every process by a sitecustomize."""
    output_dir = setup["root"] / name
    options = [
        "main.py",
        "--data_dir",
        str(setup["data"]),
        "--output_dir",
        str(output_dir),
        "--model_config_json",
        str(setup["model_json"]),
        "--matches",
        str(setup["matches"]),
        "--do_train",
        "--do_eval",
        "--no_cuda",
        "--max_seq_length",
        "24",
        "--train_batch_size",
        "8",
        "--gradient_accumulation_steps",
        str(accumulation),
        "--num_train_epochs",
        "1",
        "--learning_rate",
        "1e-2",
        "--warmup_proportion",
        "0",
        "--PRINT_EVERY",
        "2",
        "--cache_dir",
        str(setup["root"] / "cache"),
        "--allow_weak_teacher",
        *extra,
    ]
    if nproc > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--standalone",
            *options,
        ]
    else:
        command = [sys.executable, *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for variable in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(variable, None)
    if backend is not None:
        hook = setup["root"] / f"backend_{backend}"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(
            f"from pipeline import compiling\ncompiling.BACKEND = {backend!r}\n"
        )
        env["PYTHONPATH"] = os.pathsep.join([str(hook), REPO])
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    setup.setdefault("logs", {})[name] = done.stderr
    return output_dir


@pytest.fixture(scope="module")
def single(setup):
    return train(setup, "single", nproc=1)


@pytest.fixture(scope="module")
def double(setup):
    return train(setup, "double", nproc=2, accumulation=2)  # 2 processes x 2 micro-batches of 2


def test_two_processes_match_one_process(single, double):
    # Dropout is off here: one process and two draw their masks from different generators.
    # 32 examples, global batch 8 -> 4 steps; the checkpoint has the single-process keys.
    state_1 = torch.load(single / "gs4.pkl", weights_only=True)
    state_2 = torch.load(double / "gs4.pkl", weights_only=True)
    assert list(state_1) == list(state_2)
    for key in state_1:
        torch.testing.assert_close(state_2[key], state_1[key], rtol=1e-4, atol=1e-5, msg=key)
    losses_1 = [json.loads(line) for line in open(single / "metrics.jsonl")]
    losses_2 = [json.loads(line) for line in open(double / "metrics.jsonl")]
    assert [r["step"] for r in losses_1] == [r["step"] for r in losses_2] == [2, 4]
    for record_1, record_2 in zip(losses_1, losses_2):
        assert record_2["loss"] == pytest.approx(record_1["loss"], rel=1e-4)
        assert record_2["unweighted_hidden_pkd_2_2"] == pytest.approx(
            record_1["unweighted_hidden_pkd_2_2"], rel=1e-4
        )


def test_batches_grouped_by_length_are_split_over_compiled_processes_as_one_process_sees_them(setup, single):
    """Two compiled processes (DistributedDataParallel around a compiled student) with
    --group_by_length train as one eager process with the same global batches (torch.compile's
    "eager" backend: its graph capture alone, tests/example/test_compile.py)."""
    one = train(setup, "single_grouped", nproc=1, extra=["--group_by_length"])
    # One micro-batch per step: grouping sorts each global micro-batch (here 2 x 4 examples).
    two = train(setup, "double_grouped", nproc=2, extra=["--group_by_length", "--compile"], backend="eager")
    assert re.search(r"torch.compile by step 4: [1-9]\d* graphs", setup["logs"]["double_grouped"])
    state_1 = torch.load(one / "gs4.pkl", weights_only=True)
    state_2 = torch.load(two / "gs4.pkl", weights_only=True)
    for key in state_1:
        torch.testing.assert_close(state_2[key], state_1[key], rtol=1e-4, atol=1e-5, msg=key)
    # The grouped batches are not the random ones: the run ends elsewhere.
    random_order = torch.load(single / "gs4.pkl", weights_only=True)
    assert any(not torch.allclose(random_order[key], value, atol=1e-4) for key, value in state_1.items())


def test_only_rank_zero_writes(single, double):
    """The same files as one process writes; TensorBoard's event file (named after the second it
    was opened in and its process) one, where tensorboard is installed, with the steps once."""
    names = [sorted(set(os.listdir(folder)) - set(event_files(folder))) for folder in (single, double)]
    assert names[1] == names[0]
    for name in ("eval_results.txt", "metrics.jsonl"):
        lines_1 = (single / name).read_text().splitlines()
        lines_2 = (double / name).read_text().splitlines()
        assert len(lines_2) == len(lines_1)  # one writer: no line written twice
    assert [json.loads(line)["step"] for line in open(double / "metrics.jsonl")] == [2, 4]
    expected_files = 1 if has_tensorboard() else 0
    assert len(event_files(single)) == len(event_files(double)) == expected_files


def test_rank_zero_alone_writes_the_losses_to_tensorboard(double):
    """The two-process run's one event file holds each term of metrics.jsonl at its step, once."""
    pytest.importorskip("tensorboard", reason=TENSORBOARD_REASON)
    assert len(event_files(double)) == 1  # not one per process
    records = [json.loads(line) for line in open(double / "metrics.jsonl")]
    scalars = tensorboard_scalars(double)
    assert set(scalars) == set(records[0]) - {"step"}
    for tag, values in scalars.items():
        assert [step for step, _ in values] == [record["step"] for record in records], tag
        assert [value for _, value in values] == pytest.approx([record[tag] for record in records], rel=1e-6)


def test_batch_not_divisible_by_processes_is_an_error(setup):
    output_dir = setup["root"] / "odd"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "main.py",
        "--data_dir",
        str(setup["data"]),
        "--output_dir",
        str(output_dir),
        "--model_config_json",
        str(setup["model_json"]),
        "--do_train",
        "--no_cuda",
        "--max_seq_length",
        "24",
        "--train_batch_size",
        "7",
        "--cache_dir",
        str(setup["root"] / "cache"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert "--train_batch_size 7" in done.stderr and "2 processes" in done.stderr


def test_a_failed_write_on_rank_zero_stops_every_process_with_its_error(setup):
    """Rank 0 alone writes, in the background; when its write of gs2.pkl fails (a full disk),
    every process stops at a following step, rank 0 with the writer's error and the other
    saying where to look, and nothing waits forever."""
    output_dir = setup["root"] / "full_disk"
    env = disk_hook_env(setup["root"] / "full_disk_hook", full=["gs2.pkl"])
    env["OMP_NUM_THREADS"] = "1"
    for variable in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(variable, None)
    options = cache_run_options(setup, output_dir, "--ckpt_frequency", "2", "--num_train_epochs", "2")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    done = subprocess.run(
        [*command, "main.py", *options], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode != 0
    assert re.search(r"writing \S*gs2\.pkl failed: \[Errno 28\] No space left on device", done.stderr)
    assert "process 0 could not write a checkpoint" in done.stderr
    assert (
        sorted(f for f in os.listdir(output_dir) if f.endswith((".pkl", ".pt")) or f.startswith(".tmp")) == []
    )


# ----- teacher logits cached by example index ----------------------------------------------------


def cache_run_options(setup, output_dir, *extra, model_json="model_json"):
    return [
        "--data_dir",
        str(setup["data"]),
        "--output_dir",
        str(output_dir),
        "--model_config_json",
        str(setup[model_json]),
        "--do_train",
        "--no_cuda",
        "--max_seq_length",
        "24",
        "--train_batch_size",
        "8",
        "--num_train_epochs",
        "3",
        "--learning_rate",
        "1e-2",
        "--PRINT_EVERY",
        "4",
        "--cache_dir",
        str(setup["root"] / "cache"),
        "--teacher_check_size",
        "0",
        *extra,
    ]  # count training's calls


def test_cached_teacher_logits_run_the_teacher_once_per_example(setup):
    # 32 examples, batch 8, 3 epochs: 4 teacher calls with the cache instead of 12.
    # Dropout on in the student: the cache must not move the generators the student draws from.
    runs = {}
    for name, extra in (("plain", []), ("cached", ["--cache_teacher_logits"])):
        calls = []
        main.run(
            cache_run_options(setup, setup["root"] / name, *extra, model_json="dropout_json"),
            build_distiller=counting_teacher_calls(calls),
        )
        runs[name] = (len(calls), torch.load(setup["root"] / name / "gs12.pkl", weights_only=True))
    assert runs["plain"][0] == 12 and runs["cached"][0] == 4
    # Reshuffled epochs still pair every example with its own teacher logits: the same training,
    # bit for bit (the teacher's logits in a batch do not depend on the batch's other rows here).
    for key, value in runs["plain"][1].items():
        assert torch.equal(runs["cached"][1][key], value), key


def test_cached_teacher_logits_are_pooled_across_processes(setup):
    # Each process fills the rows of its share in epoch 1; later epochs give it other examples.
    single = setup["root"] / "cached_single"
    main.run(cache_run_options(setup, single, "--cache_teacher_logits"))
    double = setup["root"] / "cached_double"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "main.py",
        *cache_run_options(setup, double, "--cache_teacher_logits"),
    ]
    done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cached for all 32 examples" in done.stderr  # after epoch 1, from both shares
    state_1 = torch.load(single / "gs12.pkl", weights_only=True)
    state_2 = torch.load(double / "gs12.pkl", weights_only=True)
    for key, value in state_1.items():
        torch.testing.assert_close(state_2[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_cached_teacher_logits_refuse_intermediate_matches(setup):
    with pytest.raises(ValueError, match="--cache_teacher_logits"):
        main.run(
            cache_run_options(
                setup, setup["root"] / "refused", "--cache_teacher_logits", "--matches", str(setup["matches"])
            )
        )


# ----- resume under torchrun -----------------------------------------------------------------------


def test_two_processes_killed_and_resumed_end_as_an_uninterrupted_two_process_run(setup):
    """Each process restores its own generators (dropout on) and its share of the logit cache."""
    import random
    import signal

    def launch(output_dir, *extra):
        options = cache_run_options(
            setup,
            output_dir,
            "--cache_teacher_logits",
            "--ckpt_frequency",
            "2",
            "--keep_resume_states",
            "100",
            *extra,
            model_json="dropout_json",
        )
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",
            "main.py",
            *options,
        ]
        return subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    straight = setup["root"] / "resume_straight"
    assert launch(straight).wait(timeout=180) == 0
    killed = setup["root"] / "resume_killed"
    process = launch(killed)
    # 12 steps, a state every 2; the kill point changes from run to run: any one must do.
    kill_after = random.Random(os.getpid()).choice([2, 4, 6, 8])  # varies on purpose
    wait_for(killed / f"resume_gs{kill_after}.pt", process, timeout=180)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed = launch(killed, "--resume")
    _, stderr = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, stderr[-3000:]
    for step in (2, 4, 6, 8, 10, 12):
        expected = torch.load(straight / f"gs{step}.pkl", weights_only=True)
        got = torch.load(killed / f"gs{step}.pkl", weights_only=True)
        for key, value in expected.items():
            assert torch.equal(got[key], value), f"gs{step}.pkl: {key}"
