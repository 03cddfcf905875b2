"""tools/benchmark.py at a tiny size: every row of its table, with positive numbers, and each training
row timing its own distiller."""

import os
import re
import subprocess
import sys
import threading

import torch

import distillation.io
from distillation import DistillationConfig, GeneralDistiller
from distillation.checkpoint_writer import BackgroundWriter
from modeling import BertForGLUESimpleAdaptor
from tests.helpers import write_tiny_mnli, write_vocab
from tools import benchmark
from tools.benchmark import WritesInTheStep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    *benchmark.TINY_SIZES,
    "--steps",
    "2",
    "--rounds",
    "1",
    "--warmup",
    "1",
    "--encode_pairs",
    "200",
    "--eval_examples",
    "64",
    "--threads",
    "1",
]
TRAINING_ROWS = [
    "bare step",
    "GeneralDistiller L4t_hidden_mse + L4_hidden_smmd",
    "GeneralDistiller L4_relation_last (SDPA kept)",
    "EMDDistiller",
    "MultiTeacherDistiller, 2 teachers",
    "MultiTeacherDistiller, 2 teachers, cached logits (epoch >= 2)",
]
NUMBER = r"([0-9][0-9,]*\.?[0-9]*)"


def test_the_tables_have_every_row_with_positive_numbers(tmp_path):
    # --levers: eager against compiled (torch.compile's quick "eager" backend) and random against
    # grouped batches, on the generated histogram and on the lengths of an MNLI-layout file.
    data = write_tiny_mnli(tmp_path, n_train=40)
    levers = ["--levers", "--lever_examples", "40", "--lever_rounds", "1", "--compile_backend", "eager"]
    lengths = [
        "--lengths_from",
        str(data / "train.tsv"),
        "--vocab_file",
        str(write_vocab(tmp_path / "v.txt")),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "tools.benchmark", *TINY, *levers, *lengths],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps_table, levers_table = result.stdout.split("Whole epochs of the GeneralDistiller")
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")]
            for line in steps_table.splitlines()
            if line.startswith("| ") and "---" not in line
        )
    }
    assert "Sizes: teacher 12 layers x 64 hidden; student 4 x 32" in result.stdout

    def positive(text, pattern):
        match = re.fullmatch(pattern.replace("{n}", NUMBER), text)
        assert match, (pattern, text)
        values = [float(group.replace(",", "")) for group in match.groups()]
        assert all(value > 0 for value in values), text
        return values

    positive(
        rows["feature encoding, length 128 (200 generated pairs)"][0],
        r"{n} pairs/s \(MNLI train, 392,702 pairs: ~{n} s\)",
    )
    # 200 pairs load in well under a millisecond, printed as 0.000 s; the extrapolation shows it.
    match = re.fullmatch(
        r"\d\.\d{3} s \(MNLI train: ~" + NUMBER + r" s\)", rows["loading the cached features"][0]
    )
    assert match and float(match.group(1)) > 0, rows["loading the cached features"]
    ratios = {}
    for name in TRAINING_ROWS:
        value, ratio = rows[f"training: {name}"]
        steps_per_second, milliseconds = positive(value, r"{n} steps/s \({n} ms\)")
        ratios[name] = positive(ratio, r"{n}x")[0]
    assert ratios["bare step"] == 1.0
    assert positive(rows["EMD step / GeneralDistiller step"][1], r"{n}x")[0] == pytest_approx(
        ratios["EMDDistiller"] / ratios["GeneralDistiller L4t_hidden_mse + L4_hidden_smmd"]
    )
    assert positive(rows["relation step / hidden-state matches' step"][1], r"{n}x")[0] == pytest_approx(
        ratios["GeneralDistiller L4_relation_last (SDPA kept)"]
        / ratios["GeneralDistiller L4t_hidden_mse + L4_hidden_smmd"]
    )
    positive(rows["evaluation (64 examples, batch 128)"][0], r"{n} examples/s")
    positive(rows["peak memory of the process (max RSS)"][0], r"{n} MiB")
    assert len(rows) == 1 + 2 + len(TRAINING_ROWS) + 4  # the header and every measurement
    check_levers(levers_table, data)
    # Beside TextBrewer (CI installs it): with the same optimizer, and with its example's.
    try:
        import textbrewer  # noqa: F401
    except ImportError:
        assert "TextBrewer is not installed" in result.stdout
    else:
        for label in ("the same optimizer", "the optimizer of its MNLI example"):
            line = next(line for line in result.stdout.splitlines() if label in line)
            positive(line.split(": ", 1)[1], r"{n} ms/step, ours/TextBrewer {n}x")


def check_levers(table, data):
    """Every configuration on both histograms, the token positions each epoch padded, and no
    graph compiled after the warm-up epochs."""
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]
    configurations = ["eager, random batches", "eager, grouped lengths", "compiled, random batches"]
    configurations.append("compiled, grouped lengths")
    histograms = ["MNLI-like lengths", "lengths of --lengths_from"]
    assert [row[:2] for row in rows] == [[h, c] for h in histograms for c in configurations]
    # The real tokens of the file's 40 pairs, counted here with the same vocabulary.
    from transformers import BertTokenizer

    from utils_glue import read_mnli_tsv

    tokenizer = BertTokenizer(vocab=str(data.parent / "v.txt"), do_lower_case=True)
    real = sum(
        len(tokenizer(e.text_a, e.text_b, truncation=True, max_length=16)["input_ids"])
        for e in read_mnli_tsv(data / "train.tsv")
    )
    for histogram, _, examples, epoch, per_step, ratio, positions in rows:
        assert examples == "40" and epoch.endswith(" s") and per_step.endswith(" ms") and ratio.endswith("x")
        padded, counted = re.fullmatch(r"([0-9,]+) \(([0-9,]+)\)", positions).groups()
        padded, counted = int(padded.replace(",", "")), int(counted.replace(",", ""))
        assert counted <= padded <= 40 * 16
        if histogram == "lengths of --lengths_from":
            assert counted == real
    assert re.search(
        r"[0-9.]+ s in the warm-up epochs, [1-9]\d* graphs; graphs compiled during the timed epochs: 0", table
    )


def pytest_approx(value):
    import pytest

    return pytest.approx(value, abs=0.002)  # both sides are rounded to 3 decimals


def test_each_training_row_runs_its_own_distiller(tmp_path, monkeypatch):
    """The GeneralDistiller and EMDDistiller rows time different losses, not one twice."""
    from distillation import GeneralDistiller, MultiTeacherDistiller
    from distiller_emd import EMDDistiller

    calls = []
    for cls in (GeneralDistiller, EMDDistiller, MultiTeacherDistiller):
        original = cls.compute_loss

        def recording(self, *args, _cls=cls, _original=original):
            calls.append(_cls.__name__)
            return _original(self, *args)

        monkeypatch.setattr(cls, "compute_loss", recording)
    torch.set_num_threads(1)
    setup = benchmark.Setup(benchmark.parse_args(TINY), str(tmp_path))
    steps = benchmark.build_steps(setup)
    assert list(steps) == TRAINING_ROWS
    expected = {
        "bare step": [],
        "EMDDistiller": ["EMDDistiller"] * 2,
        "GeneralDistiller L4t_hidden_mse + L4_hidden_smmd": ["GeneralDistiller"] * 2,
        "GeneralDistiller L4_relation_last (SDPA kept)": ["GeneralDistiller"] * 2,
    }
    for name, step in steps.items():
        calls.clear()
        step.run(2)
        assert calls == expected.get(name, ["MultiTeacherDistiller"] * 2), name


def test_the_checkpoint_table_times_each_way_of_writing_with_its_own_writer(tmp_path):
    """--checkpoints_only: for each epoch length, ours written in the background, ours written in
    the step (the writer before it) and TextBrewer's, each with positive times; the background
    row really wrote in the background (its files are the same size as the step's row's)."""
    result = subprocess.run(
        [sys.executable, "-m", "tools.benchmark", *TINY, "--checkpoints_only", "--checkpoint_epoch_steps", "3",
         "4", "--checkpoint_rounds", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sizes:" not in result.stdout  # the other tables are left out
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in result.stdout.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]
    try:
        import textbrewer  # noqa: F401

        names = ["ours, written in the background", "ours, written in the step (before)", "TextBrewer 0.2.1"]
    except ImportError:
        names = ["ours, written in the background", "ours, written in the step (before)"]
    assert [row[:2] for row in rows] == [[f"{steps} steps", name] for steps in (3, 4) for name in names]
    for _, name, mib, epoch, per_step, ratio, wait, final_wait in rows:
        assert float(epoch.removesuffix(" s")) > 0 and float(per_step.removesuffix(" ms")) >= 0
        assert float(wait.removesuffix(" s")) > 0 and final_wait.endswith(" s")
        assert ratio.endswith("x") or ratio == "n/a"
        if name.startswith("ours"):  # the student, and its resume state beside it
            assert mib == rows[0][2] and int(mib) > 0
    assert re.search(
        r"in the background / in the step: [0-9.]+x with 3-step epochs, [0-9.]+x with 4-step", result.stdout
    )


def test_the_step_row_writes_in_the_training_thread_and_the_background_row_beside_it(tmp_path, monkeypatch):
    """The two writers of the checkpoint table: the "before" row's files are written by the
    training thread itself, the background row's by the checkpoint writer's thread."""
    threads = []
    original = distillation.io.atomic_path

    def recording(path):
        threads.append(threading.current_thread().name)
        return original(path)

    monkeypatch.setattr(distillation.io, "atomic_path", recording)
    torch.set_num_threads(1)
    setup = benchmark.Setup(benchmark.parse_args(TINY), str(tmp_path))
    for writer, thread in ((WritesInTheStep, "MainThread"), (BackgroundWriter, "checkpoint-writer")):
        distiller = benchmark.checkpoint_timed(GeneralDistiller, writer)(
            setup.train_config(thread),
            DistillationConfig(),
            setup.teacher(hidden_states=False),
            setup.student(hidden_states=False),
            BertForGLUESimpleAdaptor,
            BertForGLUESimpleAdaptor,
        )
        distiller.times = benchmark.CheckpointTimes()
        threads.clear()
        optimizer = torch.optim.SGD(distiller.model_S.parameters(), lr=0.1)
        distiller.times.timed_train(lambda d=distiller, o=optimizer: d.train(o, setup.loader(), num_steps=1))
        assert threads == [thread, thread]  # gs1.pkl, resume_gs1.pt
        assert len(distiller.times.waits) == len(distiller.times.final_waits) == 1
