"""BERT-EMD in full (distiller_emd_full.py): the weight update, attention distances, padding,
the defaults against the tutorial's EMDDistiller, resume, the two-stage schedule and the options."""

import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertConfig

import main
from distillation import DistillationConfig, TrainingConfig
from distillation.losses import att_mse_loss
from distiller_emd import EMDDistiller, transport_plan
from distiller_emd_full import FullEMDDistiller, attention_distances, updated_layer_weights
from modeling import BertForGLUESimple, BertForGLUESimpleAdaptor
from pipeline.options import parse_args
from tests.helpers import load_main_emd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VOCAB, LENGTH, BATCH = 30, 10, 4


def make_models(heads_S=2, attention=True):
    """A 2-layer student and a 3-layer teacher (dropout off), with hidden states and maps."""

    def bert(layers, hidden, heads, seed):
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=2 * hidden,
            max_position_embeddings=32,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        return BertForGLUESimple(config, 3, output_hidden_states=True, output_attentions=attention)

    return bert(3, 24, 2, 1), bert(2, 16, heads_S, 2)


def distiller(tmp_path, cls=FullEMDDistiller, models=None, d_config=None, **options):
    model_T, model_S = models or make_models()
    d_config = d_config or DistillationConfig(temperature=2, hard_label_weight=1.0)
    t_config = TrainingConfig(
        device="cpu",
        output_dir=str(tmp_path / "out"),
        log_dir=str(tmp_path / "out"),
        keep_resume_states=10,
        ckpt_steps=3,
    )
    torch.manual_seed(0)  # the projections' initialisation
    return cls(
        t_config, d_config, model_T, model_S, BertForGLUESimpleAdaptor, BertForGLUESimpleAdaptor, **options
    )


def batch(seed=0, length=LENGTH, real=(10, 7, 5, 3)):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (BATCH, length), generator=generator)
    mask = torch.zeros(BATCH, length, dtype=torch.long)
    for row, size in enumerate(real):
        mask[row, :size] = 1
    return {
        "input_ids": input_ids * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(mask),
        "labels": torch.tensor([0, 1, 2, 1]),
    }


def loader(num_batches=6, seed=0):
    batches = [batch(seed + i) for i in range(num_batches)]
    tensors = [
        torch.cat([b[k] for b in batches])
        for k in ("input_ids", "attention_mask", "token_type_ids", "labels")
    ]
    dataset = TensorDataset(*tensors)

    def as_dict(items):
        ids, mask, types, labels = (torch.stack(column) for column in zip(*items))
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}

    return DataLoader(dataset, batch_size=BATCH, shuffle=False, collate_fn=as_dict)


def losses_of(d, b):
    results_T = d.teacher_results(b, {})
    results_S = BertForGLUESimpleAdaptor(b, d.model_S(**b))
    return d.compute_loss(results_S, results_T)


def train(d, steps, **extra):
    optimizer = torch.optim.AdamW(d.model_S.parameters(), lr=1e-3)
    d.log_every_steps = 1
    d.train(optimizer, loader(), num_steps=steps, **extra)


def metrics(d):
    with open(os.path.join(d.t_config.log_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if "resumed" not in line]


# ----- the pieces ---------------------------------------------------------------------------
def test_weight_update_against_a_hand_computation():
    # Student layer 0 is close to teacher layer 0, student layer 1 to teacher layer 2; teacher
    # layer 1 costs 2 from student 0 and 3 from student 1.
    distances = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 1.0]])
    weights_S, weights_T = np.full(2, 1 / 2), np.full(3, 1 / 3)
    plan = transport_plan(weights_S, weights_T, distances)
    np.testing.assert_allclose(plan, [[1 / 3, 1 / 6, 0], [0, 1 / 6, 1 / 3]], atol=1e-12)
    # Carried costs: student (1/3*1 + 1/6*2, 1/6*3 + 1/3*1) = (2/3, 5/6);
    # teacher (1/3, 1/6*2 + 1/6*3, 1/3) = (1/3, 5/6, 1/3).
    # Student ratios cost/weight = (4/3, 5/3) -> 1/ratio = (3/4, 3/5) -> normalised (5/9, 4/9).
    # Teacher ratios (1, 5/2, 1) -> (1, 2/5, 1) -> normalised (5/12, 2/12, 5/12).
    new_S, new_T = updated_layer_weights(weights_S, weights_T, plan, distances)
    np.testing.assert_allclose(new_S, [5 / 9, 4 / 9], rtol=1e-12)
    np.testing.assert_allclose(new_T, [5 / 12, 2 / 12, 5 / 12], rtol=1e-12)
    # The update uses the cost divided by the current weight: a heavier layer carrying the
    # same cost keeps more weight.
    new_S, _ = updated_layer_weights(np.array([0.75, 0.25]), weights_T, plan, distances)
    ratios = np.array([2 / 3 / 0.75, 5 / 6 / 0.25])
    np.testing.assert_allclose(new_S, (1 / ratios) / (1 / ratios).sum(), rtol=1e-12)


def test_a_layer_that_carried_no_cost_gets_a_finite_weight():
    plan = np.array([[0.5, 0.0], [0.0, 0.5]])
    new_S, new_T = updated_layer_weights(
        np.full(2, 0.5), np.full(2, 0.5), plan, np.array([[0.0, 1.0], [1.0, 2.0]])
    )
    assert np.isfinite(new_S).all() and np.isfinite(new_T).all()
    assert new_S.sum() == pytest.approx(1) and new_S[0] > 0.99


def test_attention_distances_equal_att_mse_loss_of_every_pair():
    torch.manual_seed(0)
    attention_S = torch.rand(2, 3, 2, 6, 6).softmax(-1)
    attention_T = torch.rand(4, 3, 2, 6, 6).softmax(-1)
    mask = torch.ones(3, 6)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    distances = attention_distances(attention_S, attention_T, mask)
    for i in range(2):
        for j in range(4):
            expected = att_mse_loss(attention_S[i], attention_T[j], mask)
            assert distances[i, j].item() == pytest.approx(expected.item(), rel=1e-5)
    # Two nearly equal maps (a student started from its teacher): D is tiny beside the maps'
    # norms and must not drown in rounding.
    close_T = attention_S + 1e-4 * torch.randn_like(attention_S)
    direct = (
        ((attention_S[1].double() - close_T[0].double()) ** 2)
        * (mask[:, :, None] * mask[:, None, :])[:, None].double()
    ).sum() / ((mask[:, :, None] * mask[:, None, :]).sum() * 2)
    got = attention_distances(attention_S, close_T, mask)[1, 0].item()
    assert got == pytest.approx(direct.item(), rel=1e-4)


# ----- the distiller ------------------------------------------------------------------------
def test_the_defaults_equal_the_tutorials_emd_distiller_bit_for_bit(tmp_path):
    tutorial = distiller(tmp_path / "a", cls=EMDDistiller)
    full = distiller(tmp_path / "b")
    for seed in range(3):
        total_a, losses_a = losses_of(tutorial, batch(seed))
        total_b, losses_b = losses_of(full, batch(seed))
        assert torch.equal(total_a, total_b)
        assert losses_a.keys() == losses_b.keys()
        assert all(torch.equal(losses_a[name], losses_b[name]) for name in losses_a)
    # and a few training steps end with the same student, exactly
    tutorial, full = distiller(tmp_path / "c", cls=EMDDistiller), distiller(tmp_path / "d")
    train(tutorial, 4)
    train(full, 4)
    for a, b in zip(tutorial.model_S.state_dict().values(), full.model_S.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["loss"] for r in metrics(tutorial)] == [r["loss"] for r in metrics(full)]


def test_the_full_method_adds_attention_emd_and_learns_the_weights(tmp_path):
    d = distiller(tmp_path, attention=True, update_weights=True)
    total, losses = losses_of(d, batch())
    assert losses["unweighted_attention_attention_mse_emd"] > 0
    expected = (
        losses["unweighted_kd_loss"]
        + losses["unweighted_hard_label_loss"]
        + losses["unweighted_hidden_hidden_mse_emd"]
        + losses["unweighted_embedding_hidden_mse"]
        + losses["unweighted_attention_attention_mse_emd"]
    )
    torch.testing.assert_close(total, expected)
    # The weights moved off uniform, stay normalised, and are logged (one shared set).
    assert not np.allclose(d.layer_weights_S, 0.5)
    assert d.layer_weights_S.sum() == pytest.approx(1) and d.layer_weights_T.sum() == pytest.approx(1)
    np.testing.assert_array_equal(d.attention_weights_S, d.layer_weights_S)
    assert losses["layer_weight_S1"].item() == pytest.approx(d.layer_weights_S[0], rel=1e-6)
    assert {"layer_weight_T1", "layer_weight_T3"} <= set(losses)


def test_separate_weights_are_the_mean_of_nothing(tmp_path):
    shared = distiller(tmp_path / "a", attention=True, update_weights=True)
    separate = distiller(tmp_path / "b", attention=True, update_weights=True, separate_weights=True)
    losses_of(shared, batch())
    _, losses = losses_of(separate, batch())
    assert not np.allclose(separate.layer_weights_S, separate.attention_weights_S)
    np.testing.assert_allclose(
        (separate.layer_weights_S + separate.attention_weights_S) / 2, shared.layer_weights_S, rtol=1e-12
    )
    assert {"hidden_layer_weight_S1", "attention_layer_weight_T3"} <= set(losses)


def test_extra_padding_gives_the_same_loss_and_weights(tmp_path):
    short = distiller(tmp_path / "a", attention=True, update_weights=True)
    padded = distiller(tmp_path / "b", attention=True, update_weights=True)
    b = batch(length=LENGTH)
    longer = {
        key: torch.nn.functional.pad(value, (0, 6)) if value.dim() == 2 else value for key, value in b.items()
    }
    total_a, losses_a = losses_of(short, b)
    total_b, losses_b = losses_of(padded, longer)
    torch.testing.assert_close(total_a, total_b, rtol=1e-5, atol=1e-6)
    for name in losses_a:
        torch.testing.assert_close(losses_a[name], losses_b[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(short.layer_weights_T, padded.layer_weights_T, rtol=1e-5)


def test_resume_restores_the_layer_weights_and_continues_exactly(tmp_path):
    options = dict(attention=True, update_weights=True, separate_weights=True)
    whole = distiller(tmp_path, **options)
    train(whole, 6)  # a checkpoint and a resume state every 3 steps
    records = metrics(whole)
    final = {name: getattr(whole, name) for name in FullEMDDistiller._weight_names()}
    state_path = tmp_path / "out" / "resume_gs3.pt"
    saved = torch.load(state_path, weights_only=True)["distiller"]
    assert set(saved) == set(final) and saved["layer_weights_S"].dtype == torch.float64
    assert not np.allclose(saved["layer_weights_T"].numpy(), 1 / 3)  # they had moved by step 3
    assert not np.array_equal(saved["layer_weights_T"].numpy(), final["layer_weights_T"])

    # As if killed after step 3: a fresh distiller (uniform weights) resumes in the same folder.
    resumed = distiller(tmp_path, **options)
    resumed.resume_from(str(state_path))
    train(resumed, 6)
    for name, weights in final.items():
        np.testing.assert_array_equal(getattr(resumed, name), weights)
    assert metrics(resumed) == records  # steps 4-6: the same losses and weights, exactly


def test_two_stages_switch_terms_at_the_right_step(tmp_path):
    d = distiller(tmp_path, attention=True, update_weights=True, two_stage=True, intermediate_share=0.5)
    train(d, 6)
    records = metrics(d)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for record in records:
        emd = (
            record["unweighted_hidden_hidden_mse_emd"]
            + record["unweighted_attention_attention_mse_emd"]
            + record["unweighted_embedding_hidden_mse"]
        )
        prediction = record["unweighted_kd_loss"] + record["unweighted_hard_label_loss"]
        if record["step"] <= 3:  # steps 1-3: the intermediate layers alone
            assert record["loss"] == pytest.approx(emd, rel=1e-5) and emd > 0
        else:  # steps 4-6: the logits alone; the weights stay where stage one left them
            assert record["loss"] == pytest.approx(prediction, rel=1e-5)
            assert emd == 0
            assert record["layer_weight_S1"] == records[2]["layer_weight_S1"]
    assert d.stage() == "prediction"


# ----- options and errors -------------------------------------------------------------------
def test_bad_combinations_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="separate_weights .* needs attention and update_weights"):
        distiller(tmp_path, separate_weights=True, update_weights=True)
    with pytest.raises(ValueError, match="intermediate_share must be in"):
        distiller(tmp_path, two_stage=True, intermediate_share=1.0)
    with pytest.raises(ValueError, match="the student has 1 heads, the teacher 2"):
        distiller(tmp_path, models=make_models(heads_S=1), attention=True)
    with pytest.raises(ValueError, match="kd_loss_weight and hard_label_weight are both 0"):
        distiller(
            tmp_path, two_stage=True, d_config=DistillationConfig(kd_loss_weight=0, hard_label_weight=0)
        )
    d = distiller(tmp_path, models=make_models(attention=False), attention=True)
    with pytest.raises(ValueError, match="output_attentions=True"):
        losses_of(d, batch())


REQUIRED = ["--data_dir", "d", "--output_dir", "o", "--model_config_json", "m.json", "--do_train"]


main_emd = load_main_emd()


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--emd_separate_weights"],
            "--emd_separate_weights keeps the attention and hidden-state "
            "layer weights apart: it needs attention and update_weights",
        ),
        (["--emd_separate_weights", "--emd_attention"], "it needs attention and update_weights"),
        (
            ["--emd_intermediate_share", "0.3"],
            "--emd_intermediate_share splits the steps of two_stage, which is not set",
        ),
        (["--emd_two_stage", "--emd_intermediate_share", "0"], "must be in (0, 1), got 0.0"),
    ],
)
def test_bad_emd_options_are_refused_in_one_line(capsys, options, message):
    with pytest.raises(SystemExit):
        parse_args(REQUIRED + options, main_emd.add_emd_options, main_emd.check_emd_options)
    assert message in capsys.readouterr().err


def test_main_py_does_not_take_the_emd_options(capsys):
    """Each program declares the options it takes: main.py's parser has no --emd_* option."""
    with pytest.raises(SystemExit):
        parse_args(REQUIRED + ["--emd_attention"])
    assert "unrecognized arguments: --emd_attention" in capsys.readouterr().err


# ----- main.emd.py and the script -----------------------------------------------------------


@pytest.fixture(scope="module")
def emd_files(tmp_path_factory):
    from tests.helpers import write_bert_config, write_tiny_mnli, write_vocab

    root = tmp_path_factory.mktemp("emd_full")
    vocab = str(write_vocab(root / "vocab.txt"))
    teacher_config = write_bert_config(root / "teacher.json", num_hidden_layers=3, hidden_size=32)
    student_config = write_bert_config(root / "student.json", num_hidden_layers=2, hidden_size=16)
    torch.manual_seed(0)
    checkpoint = root / "teacher.pkl"
    torch.save(BertForGLUESimple(BertConfig.from_json_file(str(teacher_config)), 3).state_dict(), checkpoint)

    def entry(config, ckpt=None):
        return {
            "model_type": "bert",
            "prefix": "bert",
            "vocab_file": vocab,
            "config_file": str(config),
            "checkpoint": ckpt,
        }

    model_json = root / "distill.json"
    model_json.write_text(
        json.dumps({"teachers": [entry(teacher_config, str(checkpoint))], "student": entry(student_config)})
    )
    return {"data": str(write_tiny_mnli(root / "data", n_train=32, n_dev=8)), "json": str(model_json)}


@pytest.mark.parametrize(
    "options, distiller_class, attention",
    [
        ([], "EMDDistiller", False),
        (["--emd_update_weights"], "FullEMDDistiller", False),
        (["--emd_attention", "--emd_update_weights", "--emd_two_stage"], "FullEMDDistiller", True),
    ],
)
def test_main_emd_builds_the_full_distiller_and_asks_for_attention_only_when_needed(
    emd_files, tmp_path, options, distiller_class, attention
):
    seen = {}
    build = main_emd.build_emd_distiller

    def spy(args, train_config, teachers, student, matches):
        seen["models"] = teachers + [student]
        return build(args, train_config, teachers, student, matches)

    main.run(
        [
            "--data_dir",
            emd_files["data"],
            "--output_dir",
            str(tmp_path),
            "--model_config_json",
            emd_files["json"],
            "--do_train",
            "--max_seq_length",
            "24",
            "--train_batch_size",
            "8",
            "--num_train_epochs",
            "2",
            "--learning_rate",
            "1e-3",
            "--PRINT_EVERY",
            "1",
            "--allow_weak_teacher",
            *options,
        ],
        build_distiller=spy,
        add_options=main_emd.add_emd_options,
        check=main_emd.check_emd_options,
    )
    for model in seen["models"]:
        assert model.output_attentions == attention
        if attention:  # SDPA gives no maps
            assert model.config._attn_implementation == "eager"
    records = metrics_in(tmp_path)
    assert len(records) == 8
    assert ("layer_weight_T3" in records[-1]) == ("--emd_update_weights" in options)
    assert ("unweighted_attention_attention_mse_emd" in records[-1]) == attention
    if "--emd_two_stage" in options:  # 4 steps per epoch: the first epoch is stage one
        assert (
            records[3]["unweighted_attention_attention_mse_emd"] > 0
            and records[4]["unweighted_hidden_hidden_mse_emd"] == 0
        )


def metrics_in(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_the_script_passes_the_emd_variables(tmp_path):
    import subprocess

    stub = tmp_path / "python"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n')
    stub.chmod(0o755)
    script = os.path.join(REPO, "run_mnli_distill_T4tiny_emd.sh")

    def passed(**variables):
        env = dict(
            os.environ,
            PYTHON=str(stub),
            ARGS_FILE=str(tmp_path / "args"),
            OUTPUT_ROOT_DIR=str(tmp_path / "out"),
            **variables,
        )
        result = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
        return result, (tmp_path / "args").read_text().splitlines() if result.returncode == 0 else None

    _, default = passed()
    assert not [a for a in default if a.startswith("--emd")]  # the tutorial's method
    _, full = passed(
        emd_attention="1",
        emd_update_weights="1",
        emd_separate_weights="1",
        emd_two_stage="1",
        emd_intermediate_share="0.25",
    )
    assert [a for a in full if a.startswith("--emd")] == [
        "--emd_attention",
        "--emd_update_weights",
        "--emd_separate_weights",
        "--emd_two_stage",
        "--emd_intermediate_share",
    ]
    assert full[full.index("--emd_intermediate_share") + 1] == "0.25"
    assert "emd_attention_update_weights_separate_weights_two_stage" in full[full.index("--output_dir") + 1]
    result, _ = passed(emd_attention="yes")
    assert result.returncode != 0 and "emd_attention=yes: expected 0 or 1" in result.stderr
