"""Interrupted runs: SIGKILL then --resume reaches the same weights; SIGTERM saves a state;
a non-finite loss stops the run before a checkpoint; resume states load without pickle."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import write_bert_config, write_tiny_mnli, write_vocab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 24  # 96 examples, batch 8 -> 12 steps per epoch, 2 epochs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    # Big enough that a step takes a few milliseconds, so a kill lands mid-run.
    config = write_bert_config(root / "bert.json", num_hidden_layers=2, hidden_size=64,
                               intermediate_size=256)
    entry = {"model_type": "bert", "prefix": "bert", "vocab_file": str(write_vocab(root / "v.txt")),
             "config_file": str(config), "checkpoint": None}
    model_json = root / "model.json"
    model_json.write_text(json.dumps({"teachers": [], "student": entry}))
    return {"root": root, "json": str(model_json),
            "data": str(write_tiny_mnli(root / "data", n_train=96, n_dev=8))}


def command(setup, output_dir, *extra):
    # ckpt_frequency 12: a checkpoint and a resume state after every step; dropout stays on,
    # so the restored random number generators matter.
    return [sys.executable, os.path.join(REPO, "main.py"), "--data_dir", setup["data"],
            "--output_dir", str(output_dir), "--model_config_json", setup["json"], "--do_train",
            "--max_seq_length", "32", "--train_batch_size", "8", "--num_train_epochs", "2",
            "--learning_rate", "1e-3", "--ckpt_frequency", "12", "--keep_resume_states", "3",
            *extra]


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def final_weights(output_dir):
    return torch.load(os.path.join(output_dir, f"gs{STEPS}.pkl"), weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(setup):
    output_dir = setup["root"] / "straight"
    subprocess.run(command(setup, output_dir), check=True, capture_output=True)
    return final_weights(output_dir)


def test_sigkill_then_resume_reaches_the_same_weights(setup, uninterrupted):
    output_dir = setup["root"] / "killed"
    kill_step = random.Random(os.getpid()).randint(2, STEPS - 4)
    process = subprocess.Popen(command(setup, output_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for(output_dir / f"gs{kill_step}.pkl", process)
    process.kill()
    process.wait()
    assert not os.path.exists(output_dir / f"gs{STEPS}.pkl")
    leftovers = [f for f in os.listdir(output_dir) if f.startswith(".tmp")]
    for name in os.listdir(output_dir):  # every file there is whole: it loads
        if name.endswith((".pkl", ".pt")):
            torch.load(output_dir / name, weights_only=True)

    subprocess.run(command(setup, output_dir, "--resume"), check=True, capture_output=True)
    resumed = final_weights(output_dir)
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-4, atol=1e-5)
    # Temporary files of an interrupted write are never taken for results.
    assert all(not f.endswith((".pkl", ".pt")) for f in leftovers)
    # Only the newest resume states are kept.
    assert len([f for f in os.listdir(output_dir) if f.startswith("resume_gs")]) == 3


def test_sigterm_saves_a_resume_state_and_says_how_to_resume(setup):
    output_dir = setup["root"] / "terminated"
    process = subprocess.Popen(command(setup, output_dir, "--keep_resume_states", "100"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(output_dir / "gs3.pkl", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "--resume" in stderr and "Traceback" not in stderr
    states = sorted(int(f[len("resume_gs"):-3]) for f in os.listdir(output_dir) if f.startswith("resume_gs"))
    assert states and states[-1] < STEPS
    state = torch.load(output_dir / f"resume_gs{states[-1]}.pt", weights_only=True)
    assert state["global_step"] == states[-1] and "optimizer" in state and "rng" in state


def test_resume_without_a_state_is_a_clear_error(setup, tmp_path):
    result = subprocess.run(command(setup, tmp_path / "empty", "--resume"), capture_output=True, text=True)
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

    trainer = BasicTrainer(TrainingConfig(output_dir=str(tmp_path), device="cpu"), Diverging(),
                           lambda batch, outputs: {"losses": outputs["loss"]})
    loader = torch.utils.data.DataLoader(torch.ones(8, 1), batch_size=2)
    with pytest.raises(FloatingPointError, match="not finite at step 1.*unweighted_hard_label_loss"):
        trainer.train(torch.optim.SGD(trainer.model_S.parameters(), lr=0.1), loader, num_epochs=1)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".pkl")]
