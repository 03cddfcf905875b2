"""--compile on the CPU: compiled training ends where eager training does, compiles a handful of
graphs during the first epoch and none after it, works with every distiller, the logit cache
and a resume, and leaves EMD's solve outside every graph.

The runs use torch.compile's "aot_eager" backend (its graph capture and autograd, no code
generation) or "eager" (the capture alone): inductor's code generation takes minutes on two
cores. Neither changes a number, so compiled and eager runs are compared exactly. Inductor's
own kernels round differently; the losses' test below bounds it, and tools/benchmark.py prints
the difference of whole runs.
"""

import json
import os
import shutil

import pytest
import torch
from torch._dynamo.utils import counters
from transformers import BertConfig

import main
from distillation.losses import hid_mse_loss, kd_ce_loss, mmd_loss
from modeling import BertForGLUESimple
from pipeline import compiling
from pipeline.options import parse_args
from tests.helpers import run_main_emd, write_bert_config, write_tiny_mnli, write_vocab

EPOCHS, STEPS_PER_EPOCH = 3, 6  # 48 examples, batch 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile")
    vocab = str(write_vocab(root / "vocab.txt"))
    teacher_config = write_bert_config(root / "teacher.json", num_hidden_layers=3, hidden_size=32)
    entries = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = root / f"teacher{seed}.pkl"
        torch.save(BertForGLUESimple(BertConfig.from_json_file(str(teacher_config)), 3).state_dict(), path)
        entries[f"teacher{seed}"] = entry(vocab, teacher_config, path)
    for dropout in (0.0, 0.1):  # dropout on for the resume: a moved generator would show
        config = write_bert_config(
            root / f"student{dropout}.json", hidden_size=16, intermediate_size=32, dropout=dropout
        )
        entries[f"student{dropout}"] = entry(vocab, config)
    jsons = {}
    for name, teachers, student in (
        ("alone", [], "student0.0"),
        ("one", ["teacher1"], "student0.0"),
        ("one_dropout", ["teacher1"], "student0.1"),
        ("two", ["teacher1", "teacher2"], "student0.0"),
    ):
        jsons[name] = root / f"{name}.json"
        jsons[name].write_text(
            json.dumps({"teachers": [entries[t] for t in teachers], "student": entries[student]})
        )
    # projected hidden states, a pair loss, and the per-layer features: relations, attention scores
    matches = root / "matches.json"
    matches.write_text(
        json.dumps(
            [
                {"layer_S": s, "layer_T": t, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
                for s, t in ((0, 0), (1, 2), (2, 3))
            ]
            + [{"layer_S": [2, 2], "layer_T": [3, 3], "feature": "hidden", "loss": "mmd", "weight": 1}]
            + [
                {
                    "layer_S": 1,
                    "layer_T": 2,
                    "feature": "relation",
                    "loss": "relation_kl",
                    "weight": 1,
                    "relation_heads": 4,
                },
                {
                    "layer_S": 0,
                    "layer_T": 1,
                    "feature": "attention_scores",
                    "loss": "att_score_mse",
                    "weight": 1,
                },
            ]
        )
    )
    return {
        "root": root,
        "jsons": jsons,
        "matches": str(matches),
        "data": write_tiny_mnli(root / "data", 48, 16),
    }


def entry(vocab, config, checkpoint=None):
    checkpoint = str(checkpoint) if checkpoint else None
    return {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": vocab,
        "config_file": str(config),
        "checkpoint": checkpoint,
    }


# name -> (entry point, model config, options)
RUNS = {
    "general": (main.run, "one", ["--matches", "MATCHES"]),
    "trainer": (main.run, "alone", []),
    "emd_full": (run_main_emd, "one", ["--emd_attention", "--emd_update_weights", "--emd_two_stage"]),
    "emd": (run_main_emd, "one", []),
    "multi_teacher_cached_logits": (main.run, "two", ["--cache_teacher_logits"]),
}


def train(setup, name, output_dir, *extra, model=None):
    run, model_json, options = RUNS[name]
    options = [setup["matches"] if option == "MATCHES" else option for option in options]
    run(
        [
            "--data_dir",
            str(setup["data"]),
            "--output_dir",
            str(output_dir),
            "--model_config_json",
            str(setup["jsons"][model or model_json]),
            "--do_train",
            "--do_eval",
            "--max_seq_length",
            "32",
            "--train_batch_size",
            "8",
            "--num_train_epochs",
            str(EPOCHS),
            "--learning_rate",
            "1e-3",
            "--PRINT_EVERY",
            "4",
            "--pad_to_multiple_of",
            "8",  # what --compile sets: the eager run gets the same batches
            "--keep_resume_states",
            "100",
            "--allow_weak_teacher",
            *options,
            *extra,
        ]
    )
    return output_dir


@pytest.fixture
def backend(monkeypatch):
    """compiling.BACKEND for the test, with torch.compile's caches and counters emptied."""
    torch._dynamo.reset()
    counters.clear()
    yield lambda name: monkeypatch.setattr(compiling, "BACKEND", name)
    torch._dynamo.reset()


def assert_same_checkpoints(output_dir, expected_dir, every=STEPS_PER_EPOCH):
    for step in range(every, EPOCHS * STEPS_PER_EPOCH + 1, every):
        expected = torch.load(expected_dir / f"gs{step}.pkl", weights_only=True)
        got = torch.load(output_dir / f"gs{step}.pkl", weights_only=True)
        assert list(got) == list(expected), step  # nn.Module.compile keeps the parameter names
        for key, value in expected.items():
            assert torch.equal(got[key], value), f"gs{step}.pkl: {key}"


def test_compiled_training_ends_as_eager_training_and_compiles_nothing_after_the_first_epoch(
    setup, backend, monkeypatch, caplog
):
    backend("aot_eager")
    eager = train(setup, "general", setup["root"] / "general_eager")
    graphs = []  # after each checkpoint's evaluation, read from torch.compile's own counters
    evaluate = main.record_evaluation
    monkeypatch.setattr(
        main,
        "record_evaluation",
        lambda *a, **k: (evaluate(*a, **k), graphs.append(counters["stats"]["unique_graphs"])),
    )
    with caplog.at_level("INFO", logger="main"):
        compiled = train(setup, "general", setup["root"] / "general_compiled", "--compile")
    # The teacher's forward, the student's in training and in evaluation, KD and the matches.
    assert graphs == [5] * EPOCHS
    assert not counters["graph_break"]
    assert f"torch.compile by step {STEPS_PER_EPOCH}: 5 graphs" in caplog.text
    assert_same_checkpoints(compiled, eager)
    assert (compiled / "metrics.jsonl").read_text() == (eager / "metrics.jsonl").read_text()


def test_the_losses_compiled_by_inductor_equal_eager_within_float32_rounding(backend):
    """The default backend's generated kernels on what the GeneralDistiller computes: the loss
    and its gradient within 1e-5 of eager's, relatively (float32 rounds at 6e-8)."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 12, 16, generator=generator, requires_grad=True)
    teacher = torch.randn(4, 12, 16, generator=generator)
    mask = (torch.arange(12) < torch.tensor([12, 9, 5, 7])[:, None]).long()

    def losses(S, T, mask):
        kd = kd_ce_loss(S[:, 0], T[:, 0], 2.0)
        return kd + hid_mse_loss(S, T, mask) + mmd_loss([S, S], [T, T], mask, padded_length=16)

    expected = losses(student, teacher, mask)
    (expected_grad,) = torch.autograd.grad(expected, student)
    got = torch.compile(losses, backend="inductor", dynamic=True)(student, teacher, mask)
    (got_grad,) = torch.autograd.grad(got, student)
    assert counters["stats"]["unique_graphs"] == 1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["trainer", "emd", "emd_full", "multi_teacher_cached_logits"])
def test_every_distiller_trains_compiled_as_it_trains_eagerly(setup, backend, name):
    """EMD's transport plans are solved on the host between the compiled pieces: a solve
    inside a compiled function would break its graph."""
    backend("eager")
    eager = train(setup, name, setup["root"] / f"{name}_eager")
    compiled = train(setup, name, setup["root"] / f"{name}_compiled", "--compile")
    assert counters["stats"]["unique_graphs"] > 0 and not counters["graph_break"]
    assert_same_checkpoints(compiled, eager)


def test_a_compiled_run_resumed_mid_epoch_ends_as_the_uninterrupted_one(setup, backend):
    backend("eager")
    options = ["--compile", "--ckpt_frequency", "3"]  # a checkpoint and a resume state every 2 steps
    straight = train(setup, "general", setup["root"] / "resume_straight", *options, model="one_dropout")
    resumed = setup["root"] / "resume_resumed"
    shutil.copytree(straight, resumed)
    for file in os.listdir(resumed):  # back to step 8, in epoch 2, as if killed right after its state
        step = file.removeprefix("resume_").removeprefix("gs").split(".")[0]
        if step.isdigit() and int(step) > 8:
            os.remove(resumed / file)
    train(setup, "general", resumed, *options, "--resume", model="one_dropout")
    assert_same_checkpoints(resumed, straight, every=2)


def test_compile_pads_lengths_to_a_multiple_of_8_unless_told_and_a_bad_multiple_is_one_line(capsys):
    required = ["--data_dir", "d", "--output_dir", "o", "--model_config_json", "m", "--do_train"]
    assert parse_args(required).pad_to_multiple_of is None
    assert parse_args(required + ["--compile"]).pad_to_multiple_of == 8
    assert parse_args(required + ["--compile", "--pad_to_multiple_of", "16"]).pad_to_multiple_of == 16
    with pytest.raises(SystemExit):
        parse_args(required + ["--pad_to_multiple_of", "0"])
    assert capsys.readouterr().err.endswith("error: --pad_to_multiple_of must be at least 1, got 0\n")


def test_a_batch_as_long_as_it_is_wide_does_not_tie_the_next_batches_to_a_new_graph(tmp_path, backend):
    """Dynamic shapes give equal sizes one symbol unless told otherwise ("duck sizing"): a first
    batch of 8 rows of 8 tokens would make every later batch a new graph."""
    from distillation import BasicTrainer, TrainingConfig
    from modeling import BertForGLUESimpleAdaptor

    config = BertConfig.from_json_file(
        write_bert_config(tmp_path / "config.json", hidden_size=16, intermediate_size=32)
    )
    torch.manual_seed(0)
    trainer = BasicTrainer(
        TrainingConfig(output_dir=str(tmp_path / "out"), device="cpu"),
        BertForGLUESimple(config, 3),
        BertForGLUESimpleAdaptor,
    )
    trainer.compile(backend="eager", dynamic=True)
    batches = [
        {
            "input_ids": torch.randint(5, 20, (8, length)),
            "attention_mask": torch.ones(8, length, dtype=torch.long),
            "labels": torch.arange(8) % 3,
        }
        for length in (8, 16, 24, 16)
    ]
    trainer.train(torch.optim.SGD(trainer.model_S.parameters(), lr=0.1), batches, num_epochs=1)
    assert counters["stats"]["unique_graphs"] == 1
