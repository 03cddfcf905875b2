"""Interrupted runs: killed at any moment and resumed, every distiller ends bit-identical to an
uninterrupted run, with every evaluation line; SIGTERM / Ctrl-C save the state of that step;
a non-finite loss stops the run before a checkpoint.

Dropout is on (0.1, as in the shipped configs), so a random generator moved by anything
outside the training step, or restored wrongly, changes the weights; they are compared exactly.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from transformers import BertConfig

from modeling import BertForGLUESimple
from tests.helpers import (
    counting_teacher_calls,
    disk_hook_env,
    has_tensorboard,
    kill_run_mid_way,
    tensorboard_scalars,
    wait_for,
    write_bert_config,
    write_tiny_mnli,
    write_vocab,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 24  # 96 examples, batch 8 -> 12 steps per epoch, 2 epochs
CHECKPOINTS = list(range(3, STEPS + 1, 3))  # --ckpt_frequency 4: every 3 steps, each evaluated


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    vocab = str(write_vocab(root / "v.txt"))
    # Big enough that a step takes a few milliseconds, so a kill lands anywhere in the run.
    student = write_bert_config(
        root / "student.json", num_hidden_layers=2, hidden_size=32, intermediate_size=128, dropout=0.1
    )
    teacher = write_bert_config(
        root / "teacher.json", num_hidden_layers=3, hidden_size=48, intermediate_size=128, dropout=0.1
    )
    teachers = []
    for seed in (1, 2):  # two random teachers, saved as complete checkpoints
        torch.manual_seed(seed)
        path = root / f"teacher{seed}.pkl"
        torch.save(BertForGLUESimple(BertConfig.from_json_file(str(teacher)), 3).state_dict(), path)
        teachers.append(
            {
                "model_type": "bert",
                "prefix": "bert",
                "vocab_file": vocab,
                "config_file": str(teacher),
                "checkpoint": str(path),
            }
        )
    student_entry = {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": vocab,
        "config_file": str(student),
        "checkpoint": None,
    }
    jsons = {}
    for name, enabled in [("alone", []), ("one", teachers[:1]), ("two", teachers)]:
        jsons[name] = root / f"{name}.json"
        jsons[name].write_text(json.dumps({"teachers": enabled, "student": student_entry}))
    matches = root / "matches.json"  # projected hidden MSE and a pair loss
    matches.write_text(
        json.dumps(
            [
                {"layer_S": s, "layer_T": t, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
                for s, t in [(0, 0), (1, 2), (2, 3)]
            ]
            + [{"layer_S": [2, 2], "layer_T": [3, 3], "feature": "hidden", "loss": "mmd", "weight": 1}]
        )
    )
    return {
        "root": root,
        "jsons": jsons,
        "matches": str(matches),
        "data": str(write_tiny_mnli(root / "data", n_train=96, n_dev=64)),
    }


# name -> (entry script, model config, extra options)
RUNS = {
    "trainer": ("main.py", "alone", []),
    "general_with_projections": ("main.py", "one", ["--matches", "MATCHES"]),
    "emd": ("main.emd.py", "one", []),
    # learnt layer weights (in the resume state) and a stage read from the step
    "emd_full": ("main.emd.py", "one", ["--emd_attention", "--emd_update_weights", "--emd_two_stage"]),
    "multi_teacher": ("main.py", "two", []),
    "multi_teacher_cached_logits": ("main.py", "two", ["--cache_teacher_logits"]),
}


def command(setup, name, output_dir, *extra):
    script, model, options = RUNS[name]
    options = [setup["matches"] if option == "MATCHES" else option for option in options]
    return [
        sys.executable,
        os.path.join(REPO, script),
        "--data_dir",
        setup["data"],
        "--output_dir",
        str(output_dir),
        "--model_config_json",
        str(setup["jsons"][model]),
        "--do_train",
        "--do_eval",
        "--max_seq_length",
        "32",
        "--train_batch_size",
        "8",
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "1e-3",
        "--ckpt_frequency",
        "4",
        "--PRINT_EVERY",
        "5",
        "--keep_resume_states",
        "3",
        "--allow_weak_teacher",
        *options,
        *extra,
    ]


def checkpoints(output_dir):
    return {
        step: torch.load(os.path.join(output_dir, f"gs{step}.pkl"), weights_only=True) for step in CHECKPOINTS
    }


def read(output_dir, name):
    with open(os.path.join(output_dir, name), encoding="utf-8") as f:
        return f.read()


def assert_identical_runs(resumed_dir, straight_dir):
    """Every checkpoint equal bit for bit; the evaluation lines the same, once each, in order."""
    straight, resumed = checkpoints(straight_dir), checkpoints(resumed_dir)
    for step in CHECKPOINTS:
        assert resumed[step].keys() == straight[step].keys()
        for key, value in straight[step].items():
            assert torch.equal(resumed[step][key], value), f"gs{step}.pkl differs at {key}"
    assert read(resumed_dir, "eval_results.txt") == read(straight_dir, "eval_results.txt")
    assert read(resumed_dir, "eval_results.jsonl") == read(straight_dir, "eval_results.jsonl")
    steps = [json.loads(line)["step"] for line in read(resumed_dir, "eval_results.jsonl").splitlines()]
    assert steps == CHECKPOINTS
    assert not [f for f in os.listdir(resumed_dir) if f.startswith(".tmp")]  # nothing half-written


@pytest.fixture(scope="module")
def straight_runs(setup):
    """Each distiller run once without interruption (output folder per name, made on demand)."""
    done = {}

    def get(name):
        if name not in done:
            done[name] = setup["root"] / f"straight_{name}"
            subprocess.run(command(setup, name, done[name]), check=True, capture_output=True)
        return done[name]

    return get


@pytest.mark.parametrize("name", list(RUNS))
def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(setup, straight_runs, name):
    """Killed during a step, a checkpoint write or an evaluation: the resumed run ends as the
    uninterrupted one, every checkpoint evaluated once."""
    straight = straight_runs(name)
    rng = random.Random(f"{os.getpid()}-{name}")  # varies on purpose: any kill point must do
    # The cached run is killed in epoch 2, when the teachers no longer run. At least six steps
    # (two checkpoints and their evaluations) remain after the kill point, and a resume state
    # exists before it (gs6.pkl comes after resume_gs3.pt: a kill before the first state leaves
    # nothing to resume, which --resume reports as an error).
    first = 15 if name == "multi_teacher_cached_logits" else 6
    output_dir = setup["root"] / f"killed_{name}"
    kill_run_mid_way(
        command(setup, name, output_dir),
        output_dir,
        [s for s in CHECKPOINTS if first <= s <= STEPS - 6],
        STEPS,
        rng,
        max_delay=0.05,
        timeout=120,
    )
    assert not os.path.exists(output_dir / f"gs{STEPS}.pkl")

    subprocess.run(command(setup, name, output_dir, "--resume"), check=True, capture_output=True)
    assert_identical_runs(output_dir, straight)
    assert len([f for f in os.listdir(output_dir) if f.startswith("resume_gs")]) == 3
    # metrics.jsonl says where the run was resumed, and no step is logged twice.
    records = [json.loads(line) for line in read(output_dir, "metrics.jsonl").splitlines()]
    resumed_at = [r["step"] for r in records if r.get("resumed")]
    assert len(resumed_at) == 1
    logged = [r["step"] for r in records if not r.get("resumed")]
    assert logged == sorted(set(logged))
    straight_records = [json.loads(line) for line in read(straight, "metrics.jsonl").splitlines()]
    assert [r for r in records if not r.get("resumed")] == straight_records
    if has_tensorboard():  # and TensorBoard shows each step once (tests/core/test_tensorboard.py)
        scalars = tensorboard_scalars(output_dir)
        assert [step for step, _ in scalars["loss"]] == [r["step"] for r in straight_records]
        assert [loss for _, loss in scalars["loss"]] == pytest.approx([r["loss"] for r in straight_records])


def test_killed_during_an_evaluation_the_checkpoint_is_evaluated_on_resume(setup, straight_runs):
    """The state of step 6 is on the disk, then the process dies in the middle of evaluating gs6
    (the evaluation runs while the writer writes: the death waits for the state)."""
    name = "general_with_projections"
    straight = straight_runs(name)
    output_dir = setup["root"] / "killed_in_evaluation"
    # A sitecustomize that kills the process (SIGKILL, no cleanup) in its third evaluation pass.
    hook = setup["root"] / "die_in_evaluation"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(
        "import os, signal, time\n"
        "from pipeline import evaluation\n"
        "calls = [0]\n"
        "original = evaluation.predict_labels\n"
        "def dying(*args, **kwargs):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 5:  # the teacher check: mnli, mnli-mm; gs3: the same; gs6: mnli, then death\n"
        "        while not os.path.exists(os.environ['DIE_AFTER']):\n"
        "            time.sleep(0.01)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return original(*args, **kwargs)\n"
        "evaluation.predict_labels = dying\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(hook), REPO]),
        DIE_AFTER=str(output_dir / "resume_gs6.pt"),
    )
    killed = subprocess.run(command(setup, name, output_dir), env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert os.path.exists(output_dir / "resume_gs6.pt")
    assert [json.loads(line)["step"] for line in read(output_dir, "eval_results.jsonl").splitlines()] == [3]

    subprocess.run(command(setup, name, output_dir, "--resume"), check=True, capture_output=True)
    assert_identical_runs(output_dir, straight)


def eval_steps(output_dir):
    path = os.path.join(output_dir, "eval_results.jsonl")
    if not os.path.exists(path):
        return []
    return [json.loads(line)["step"] for line in read(output_dir, "eval_results.jsonl").splitlines()]


def test_sigkill_during_a_background_write_then_resume_is_bit_identical(setup, straight_runs):
    """The writer of resume_gs6.pt is slowed down (a slow disk); meanwhile training goes on: gs6
    is evaluated beside the write. A kill then leaves the write half done; the resumed run
    continues from resume_gs3.pt and ends as the uninterrupted one."""
    name = "general_with_projections"
    straight = straight_runs(name)
    output_dir = setup["root"] / "killed_in_write"
    hook = setup["root"] / "slow_disk"
    env = disk_hook_env(hook, slow={"resume_gs6.pt": 120})
    process = subprocess.Popen(
        command(setup, name, output_dir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(hook / "writing-resume_gs6.pt", process)
    deadline = time.time() + 60
    while 6 not in eval_steps(output_dir) and time.time() < deadline:  # the evaluation goes on
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert eval_steps(output_dir) == [3, 6]
    files = os.listdir(output_dir)
    assert "gs6.pkl" in files and "resume_gs6.pt" not in files and "gs9.pkl" not in files
    assert [f for f in files if f.startswith(".tmp-")] == [
        next(f for f in files if f.startswith(".tmp-resume_gs6.pt"))
    ]

    subprocess.run(command(setup, name, output_dir, "--resume"), check=True, capture_output=True)
    assert_identical_runs(output_dir, straight)


def test_a_full_disk_stops_the_run_with_one_clear_line_and_resume_continues(setup, straight_runs):
    """The write of resume_gs6.pt fails as on a full disk: the run stops at a following step,
    before the next checkpoint, with the error in one line; what was written before stays whole,
    and --resume (the disk freed) ends as the uninterrupted run."""
    name = "general_with_projections"
    straight = straight_runs(name)
    output_dir = setup["root"] / "full_disk"
    env = disk_hook_env(setup["root"] / "full_disk_hook", full=["resume_gs6.pt"])
    failed = subprocess.run(command(setup, name, output_dir), env=env, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    error = failed.stderr.strip().splitlines()[-1]
    assert re.search(
        r"ERROR main: writing \S*resume_gs6\.pt failed: \[Errno 28\] No space left on device", error
    )
    files = sorted(os.listdir(output_dir))
    assert [f for f in files if f.endswith((".pkl", ".pt")) or f.startswith(".tmp")] == [
        "gs3.pkl",
        "gs6.pkl",
        "resume_gs3.pt",
    ]

    subprocess.run(command(setup, name, output_dir, "--resume"), check=True, capture_output=True)
    assert_identical_runs(output_dir, straight)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_state_of_that_step_and_resuming_from_it_is_exact(setup, straight_runs, sig):
    """Checkpoints (and their states) come only every 3 steps; the signal lands between them,
    so the state of its step can only come from the handler, and it resumes exactly."""
    name = "general_with_projections"
    straight = straight_runs(name)
    output_dir = setup["root"] / f"signal_{sig.name}"
    process = subprocess.Popen(
        command(setup, name, output_dir, "--keep_resume_states", "100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(output_dir / "gs6.pkl", process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sig
    assert "--resume" in stderr and "Traceback" not in stderr
    states = sorted(
        int(f[len("resume_gs") : -3]) for f in os.listdir(output_dir) if f.startswith("resume_gs")
    )
    stopped_at = states[-1]
    assert f"Stopped by {sig.name} at step {stopped_at}" in stderr
    if stopped_at % 3:  # between checkpoints: a state no checkpoint wrote
        assert not os.path.exists(output_dir / f"gs{stopped_at}.pkl")
    state = torch.load(output_dir / f"resume_gs{stopped_at}.pt", weights_only=True)
    assert state["global_step"] == stopped_at
    # What a killed write leaves behind (a temporary file never renamed) is removed on resume.
    (output_dir / ".tmp-gs99.pkl-leftover").write_bytes(b"half a checkpoint")

    subprocess.run(command(setup, name, output_dir, "--resume"), check=True, capture_output=True)
    assert_identical_runs(output_dir, straight)


def test_resume_without_a_state_is_a_clear_error(setup, tmp_path):
    result = subprocess.run(
        command(setup, "trainer", tmp_path / "empty", "--resume"), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "no resume state" in result.stderr and "Traceback" not in result.stderr


def test_a_non_finite_loss_stops_the_run_before_any_checkpoint(tmp_path):
    from distillation import BasicTrainer, TrainingConfig

    class Diverging(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return {"loss": (self.weight * x).sum() * float("nan")}

    trainer = BasicTrainer(
        TrainingConfig(output_dir=str(tmp_path), device="cpu"),
        Diverging(),
        lambda batch, outputs: {"losses": outputs["loss"]},
    )
    loader = torch.utils.data.DataLoader(torch.ones(8, 1), batch_size=2)
    with pytest.raises(FloatingPointError, match="not finite at step 1.*unweighted_hard_label_loss"):
        trainer.train(torch.optim.SGD(trainer.model_S.parameters(), lr=0.1), loader, num_epochs=1)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".pkl")]


def test_a_resumed_run_keeps_the_logit_cache_and_never_runs_the_teachers_again(setup):
    """Resumed in epoch 2 from the state of step 15: the cache comes back with the state, so
    the teachers make no forward pass at all, and the run ends as the uninterrupted one."""
    import main

    options = command(
        setup,
        "multi_teacher_cached_logits",
        "OUT",
        "--keep_resume_states",
        "100",
        "--teacher_check_size",
        "0",
    )[2:]  # only the training's teacher calls count
    straight = setup["root"] / "cache_straight"
    calls = []
    main.run(
        [str(straight) if o == "OUT" else o for o in options], build_distiller=counting_teacher_calls(calls)
    )
    assert len(calls) == 2 * 12  # two teachers, the 12 batches of epoch 1

    resumed = setup["root"] / "cache_resumed"
    shutil.copytree(straight, resumed)
    for file in os.listdir(resumed):  # back to step 15, as if killed right after its state
        step = file.removeprefix("resume_").removeprefix("gs").split(".")[0]
        if step.isdigit() and int(step) > 15:
            os.remove(resumed / file)
    calls = []
    main.run(
        [str(resumed) if o == "OUT" else o for o in options] + ["--resume"],
        build_distiller=counting_teacher_calls(calls),
    )
    assert calls == []
    assert_identical_runs(resumed, straight)


def test_a_run_grouped_by_length_resumed_mid_epoch_ends_as_the_uninterrupted_one(setup, straight_runs):
    """The batches of a resumed epoch are drawn again from the run's seed and the epoch."""
    import main

    options = command(
        setup, "general_with_projections", "OUT", "--group_by_length", "--keep_resume_states", "100"
    )
    options = options[2:]  # main.py's own options
    straight = setup["root"] / "grouped_straight"
    main.run([str(straight) if o == "OUT" else o for o in options])
    resumed = setup["root"] / "grouped_resumed"
    shutil.copytree(straight, resumed)
    for file in os.listdir(resumed):  # back to step 15, in epoch 2, as if killed right after its state
        step = file.removeprefix("resume_").removeprefix("gs").split(".")[0]
        if step.isdigit() and int(step) > 15:
            os.remove(resumed / file)
    main.run([str(resumed) if o == "OUT" else o for o in options] + ["--resume"])
    assert_identical_runs(resumed, straight)
    # The grouped batches are not the random ones: the run ends elsewhere.
    random_order = checkpoints(straight_runs("general_with_projections"))[STEPS]
    assert any(
        not torch.equal(random_order[key], value) for key, value in checkpoints(straight)[STEPS].items()
    )
