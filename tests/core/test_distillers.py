"""The distillers on tiny BERT classifiers (CPU, dropout off): loss bookkeeping, training,
accumulation, checkpoints, logs, precision, multiple teachers, logit caching, batches, errors,
and the core's README example. The models come from tests/core/tiny_models.py, not the example."""

import copy
import json
import logging
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from transformers import BatchEncoding

from distillation import (
    BasicDistiller,
    BasicTrainer,
    DistillationConfig,
    GeneralDistiller,
    MultiTeacherDistiller,
)
from distillation.distillers import probability_shift
from distillation.io import safe_torch_load
from distillation.losses import att_mse_loss, mmd_loss
from tests.core.tiny_models import (
    LENGTH,
    TinyClassifier,
    adaptor,
    assert_same_state,
    checkpoint_steps,
    dict_loader,
    kd_ce,
    make_data,
    masked_mse,
    state_of,
    train_config,
    tuple_adaptor,
    whole,
)
from tests.helpers import read_repo_text


@pytest.fixture
def data():
    return make_data()


@pytest.fixture
def teacher():
    return TinyClassifier(32, seed=1)


@pytest.fixture
def student():
    return TinyClassifier(16, seed=2)


MATCHES = [
    {
        "layer_T": 2,
        "layer_S": 1,
        "feature": "hidden",
        "loss": "hidden_mse",
        "weight": 2,
        "proj": ["linear", 16, 32],
    },
    {"layer_T": [0, 2], "layer_S": [0, 1], "feature": "hidden", "loss": "mmd", "weight": 0.5},
    {"layer_T": 1, "layer_S": 1, "feature": "attention", "loss": "attention_mse", "weight": 3},
    {
        "layer_T": 0,
        "layer_S": 0,
        "feature": "hidden",
        "loss": "hidden_mse",
        "weight": 1,
        "proj": ["relu", 16, 32, {"lr": 0.01}],
    },
    {
        "layer_T": [2, 2],
        "layer_S": [1, 1],
        "feature": "hidden",
        "loss": "mmd",
        "weight": 0.25,
        "proj": ["linear", 16, 32],
    },  # a pair match with a projection: it projects both student layers
]


def general_distiller(tmp_path, teacher, student, train_settings=None, **settings):
    d_config = DistillationConfig(
        temperature=2, hard_label_weight=0.5, kd_loss_weight=1.5, intermediate_matches=MATCHES, **settings
    )
    return GeneralDistiller(
        train_config(tmp_path, **(train_settings or {})), d_config, teacher, student, adaptor, adaptor
    )


# ----- compute_loss ----------------------------------------------------------------------------


def test_general_distiller_loss_is_the_weighted_sum_of_its_parts(tmp_path, teacher, student, data):
    distiller = general_distiller(tmp_path, teacher, student)
    batch = whole(data)
    with torch.no_grad():
        results_T = adaptor(batch, teacher(**batch))
    results_S = adaptor(batch, student(**batch))
    total, losses = distiller.compute_loss(results_S, results_T)

    assert set(losses) == {
        "unweighted_kd_loss",
        "unweighted_hard_label_loss",
        "unweighted_hidden_hidden_mse_1_2",
        "unweighted_hidden_mmd_0-1_0-2",
        "unweighted_attention_attention_mse_1_1",
        "unweighted_hidden_hidden_mse_0_0",
        "unweighted_hidden_mmd_1-1_2-2",
    }
    weighted = (
        1.5 * losses["unweighted_kd_loss"]
        + 0.5 * losses["unweighted_hard_label_loss"]
        + 2 * losses["unweighted_hidden_hidden_mse_1_2"]
        + 0.5 * losses["unweighted_hidden_mmd_0-1_0-2"]
        + 3 * losses["unweighted_attention_attention_mse_1_1"]
        + losses["unweighted_hidden_hidden_mse_0_0"]
        + 0.25 * losses["unweighted_hidden_mmd_1-1_2-2"]
    )
    torch.testing.assert_close(total, weighted)

    # The parts themselves, recomputed from the models' outputs.
    mask = batch["attention_mask"]
    torch.testing.assert_close(
        losses["unweighted_kd_loss"], kd_ce(results_S["logits"], results_T["logits"], 2)
    )
    torch.testing.assert_close(
        losses["unweighted_hard_label_loss"], F.cross_entropy(results_S["logits"], batch["labels"])
    )
    linear, relu = distiller.projs[0], distiller.projs[3]
    torch.testing.assert_close(
        losses["unweighted_hidden_hidden_mse_1_2"],
        masked_mse(linear(results_S["hidden"][1]), results_T["hidden"][2], mask),
    )
    torch.testing.assert_close(
        losses["unweighted_hidden_hidden_mse_0_0"],
        masked_mse(relu(results_S["hidden"][0]), results_T["hidden"][0], mask),
    )
    hs_S, hs_T = results_S["hidden"], results_T["hidden"]
    torch.testing.assert_close(
        losses["unweighted_hidden_mmd_0-1_0-2"], mmd_loss([hs_S[0], hs_S[1]], [hs_T[0], hs_T[2]], mask)
    )
    pair_proj = distiller.projs[4]
    torch.testing.assert_close(
        losses["unweighted_hidden_mmd_1-1_2-2"], mmd_loss([pair_proj(hs_S[1])] * 2, [hs_T[2]] * 2, mask)
    )
    torch.testing.assert_close(
        losses["unweighted_attention_attention_mse_1_1"],
        att_mse_loss(results_S["attention"][1], results_T["attention"][1], mask),
    )
    assert distiller.projs[1] is None and distiller.projs[2] is None
    assert distiller.projs_group[3] == {"lr": 0.01}

    # train_on_batch forwards the models itself and gives the same loss.
    total_again, _ = distiller.train_on_batch(batch, {})
    torch.testing.assert_close(total_again, total)
    total.backward()
    for proj in (linear, relu, pair_proj):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_basic_distiller_accepts_tuples_and_applies_probability_shift(tmp_path, teacher, student):
    d_config = DistillationConfig(temperature=1, probability_shift=True)
    distiller = BasicDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)
    logits_S = torch.tensor([[0.5, 0.1], [0.2, 0.3], [1.0, -1.0]])
    logits_T = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, -2.0]])
    labels = torch.tensor([1, 1, 0])  # the teacher is wrong on the first example only
    shifted_T = torch.tensor([[0.0, 2.0], [0.0, 3.0], [1.0, -2.0]])
    total, losses = distiller.compute_loss({"logits": (logits_S,), "labels": labels}, {"logits": [logits_T]})
    torch.testing.assert_close(losses["unweighted_kd_loss"], kd_ce(logits_S, shifted_T, 1))
    torch.testing.assert_close(total, losses["unweighted_kd_loss"])


def test_logits_mask_selects_rows_before_kd(tmp_path, teacher, student):
    distiller = BasicDistiller(
        train_config(tmp_path), DistillationConfig(temperature=3), teacher, student, adaptor, adaptor
    )
    torch.manual_seed(0)
    logits_S, logits_T = torch.randn(2, 4, 5), torch.randn(2, 4, 5)  # per-token logits
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    _, losses = distiller.compute_loss(
        {"logits": logits_S, "logits_mask": mask}, {"logits": logits_T, "logits_mask": mask}
    )
    rows = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    expected = kd_ce(torch.stack([logits_S[r] for r in rows]), torch.stack([logits_T[r] for r in rows]), 3)
    torch.testing.assert_close(losses["unweighted_kd_loss"], expected)


def cwsm_tau(logits_S, logits_T, beta=2.0):
    confidence = 1 / (F.softmax(logits_S, -1).max(-1).values + 1e-3)
    return 4 + (confidence.mean() - confidence) * beta


def flsw_tau(logits_S, logits_T, beta=1.0, gamma=2.0):
    w = (1 - F.cosine_similarity(logits_S, logits_T, dim=-1)) ** gamma
    return 4 + (w.mean() - w) * beta


@pytest.mark.parametrize(
    "scheduler, tau_of", [(["cwsm", 2.0], cwsm_tau), (["flsw", 1.0, 2.0], flsw_tau)], ids=["cwsm", "flsw"]
)
def test_a_temperature_scheduler_sets_per_example_temperatures(
    tmp_path, teacher, student, data, scheduler, tau_of
):
    d_config = DistillationConfig(temperature=4, temperature_scheduler=scheduler)
    distiller = BasicDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)
    logits_S, logits_T = torch.tensor([[3.0, 0.0], [0.1, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = tau_of(logits_S, logits_T)
    _, losses = distiller.compute_loss({"logits": logits_S}, {"logits": logits_T})
    expected = sum(kd_ce(logits_S[i : i + 1], logits_T[i : i + 1], tau[i]) for i in range(2)) / 2
    torch.testing.assert_close(losses["unweighted_kd_loss"], expected)
    assert d_config.temperature == 4

    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 32), num_steps=2)
    assert checkpoint_steps(tmp_path / "out") == [2]  # and it trains


def test_probability_shift_swaps_the_top_logit_with_the_gold_one():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0], [1.0, 4.0, 2.0]])
    shifted = probability_shift(logits, torch.tensor([1, 2, 0]))
    assert shifted.tolist() == [[1.0, 3.0, 0.0], [0.0, 2.0, 5.0], [4.0, 1.0, 2.0]]
    assert logits[0, 0] == 3.0  # the input is left as it was


def test_multi_teacher_distills_from_the_average_of_the_teachers(tmp_path, student, data):
    teachers = [TinyClassifier(32, seed=3), TinyClassifier(32, seed=4)]
    d_config = DistillationConfig(temperature=2, hard_label_weight=0.25)
    distiller = MultiTeacherDistiller(train_config(tmp_path), d_config, teachers, student, adaptor, adaptor)
    batch = whole(data)
    with torch.no_grad():
        results_T = [adaptor(batch, t(**batch)) for t in teachers]
    results_S = adaptor(batch, student(**batch))
    total, losses = distiller.compute_loss(results_S, results_T)
    average = (results_T[0]["logits"] + results_T[1]["logits"]) / 2
    hard = F.cross_entropy(results_S["logits"], batch["labels"])
    torch.testing.assert_close(losses["unweighted_kd_loss"], kd_ce(results_S["logits"], average, 2))
    torch.testing.assert_close(total, kd_ce(results_S["logits"], average, 2) + 0.25 * hard)
    total_again, _ = distiller.train_on_batch(batch, {})  # the distiller forwards the teachers itself
    torch.testing.assert_close(total_again, total)


# ----- training ------------------------------------------------------------------------------


def test_projections_train_and_the_teacher_does_not_change(tmp_path, teacher, student, data):
    teacher_before = state_of(teacher)
    distiller = general_distiller(tmp_path, teacher, student)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())  # frozen at once
    projections_before = [state_of(p) for p in distiller.projs if p is not None]
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    with distiller:
        distiller.train(optimizer, dict_loader(data, 16), num_steps=3)
        groups = len(optimizer.param_groups)
        distiller.train(optimizer, dict_loader(data, 16), num_steps=1)  # the groups join once

    assert groups == len(optimizer.param_groups) == 4  # the student's and one per projection, in order
    for group, proj in zip(optimizer.param_groups[1:], [p for p in distiller.projs if p is not None]):
        assert [id(p) for p in group["params"]] == [id(p) for p in proj.parameters()]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for proj, before in zip([p for p in distiller.projs if p is not None], projections_before):
        assert all(id(p) in in_optimizer for p in proj.parameters())
        assert not torch.equal(
            proj.weight if hasattr(proj, "weight") else proj[0].weight,
            before["weight" if "weight" in before else "0.weight"],
        )
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3, 0.01, 1e-3]
    assert_same_state(teacher.state_dict(), teacher_before)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert student.training


def hard_label_loss(model, data):
    with torch.no_grad():
        return model(**data)["loss"].mean().item()


def test_thirty_steps_lower_the_loss_of_a_trainer_and_a_distiller(tmp_path, teacher, student, data):
    before = hard_label_loss(teacher, data)
    trainer = BasicTrainer(train_config(tmp_path), teacher, adaptor)
    trainer.train(torch.optim.AdamW(teacher.parameters(), lr=3e-3), dict_loader(data, 16), num_steps=30)
    teacher.eval()
    assert hard_label_loss(teacher, data) < 0.8 * before

    def kd_to_teacher():
        with torch.no_grad():
            return kd_ce(student(**data)["logits"], teacher(**data)["logits"], 1).item()

    def distillation_loss():
        with torch.no_grad():
            return distiller.train_on_batch(whole(data), {})[0].item()

    distiller = general_distiller(tmp_path / "kd", teacher, student)  # KD, hard labels and matches
    before, loss_before = kd_to_teacher(), distillation_loss()
    distiller.train(torch.optim.AdamW(student.parameters(), lr=3e-3), dict_loader(data, 16), num_steps=30)
    assert kd_to_teacher() < 0.8 * before
    assert distillation_loss() < 0.7 * loss_before


def test_gradient_accumulation_equals_one_big_batch(tmp_path, teacher, student, data):
    students = [student, copy.deepcopy(student)]
    d_config = DistillationConfig(temperature=2, hard_label_weight=0.5)
    for model, (accumulation, batch_size) in zip(students, [(2, 16), (1, 32)]):
        distiller = BasicDistiller(
            train_config(tmp_path / str(accumulation), gradient_accumulation_steps=accumulation),
            d_config,
            teacher,
            model,
            adaptor,
            adaptor,
        )
        distiller.train(
            torch.optim.SGD(model.parameters(), lr=0.5),
            dict_loader(data, batch_size),
            num_epochs=2,
            max_grad_norm=1.0,
        )  # 2 steps per epoch
    changed = state_of(students[0])["classifier.weight"]
    assert not torch.equal(changed, TinyClassifier(16, seed=2).classifier.weight.detach())
    accumulated, whole_batch = state_of(students[0]), state_of(students[1])
    for key in accumulated:
        torch.testing.assert_close(accumulated[key], whole_batch[key], rtol=1e-5, atol=1e-6)


def test_checkpoints_at_the_promised_steps(tmp_path, student, data):
    saved = {}

    def callback(*, model, step):  # TextBrewer calls it with keywords
        assert model is student
        saved[step] = state_of(model)
        model.eval()

    trainer = BasicTrainer(train_config(tmp_path, ckpt_frequency=2), student, adaptor)
    trainer.train(
        torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_epochs=2, callback=callback
    )  # 4 steps per epoch
    out = tmp_path / "out"
    assert checkpoint_steps(out) == sorted(saved) == [2, 4, 6, 8]
    for step in saved:  # each file holds the student's weights of its own step
        assert_same_state(safe_torch_load(out / f"gs{step}.pkl"), saved[step])
    assert not torch.equal(saved[2]["classifier.weight"], saved[8]["classifier.weight"])
    assert student.training  # back in training mode after the callback

    steps = []
    trainer = BasicTrainer(train_config(tmp_path / "steps", ckpt_steps=2), student, adaptor)
    trainer.train(
        torch.optim.SGD(student.parameters(), lr=0.1),
        dict_loader(data, 16),
        num_steps=5,
        callback=lambda model, step: steps.append(step),
    )
    assert checkpoint_steps(tmp_path / "steps" / "out") == steps == [2, 4, 5]

    # Every second epoch and the last one; accumulation 2 -> 2 steps per epoch.
    trainer = BasicTrainer(
        train_config(tmp_path / "epochs", ckpt_epoch_frequency=2, gradient_accumulation_steps=2),
        student,
        adaptor,
    )
    trainer.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_epochs=3)
    assert checkpoint_steps(tmp_path / "epochs" / "out") == [4, 6]


def test_train_needs_exactly_one_length(tmp_path, student, data):
    trainer = BasicTrainer(train_config(tmp_path), student, adaptor)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    for length in ({}, {"num_epochs": 1, "num_steps": 2}):
        with pytest.raises(ValueError, match="num_epochs"):
            trainer.train(optimizer, dict_loader(data, 16), **length)


def test_metrics_every_log_every_steps_steps(tmp_path, teacher, student, data):
    config = train_config(tmp_path, log_dir=str(tmp_path / "logs"))
    distiller = BasicDistiller(
        config, DistillationConfig(hard_label_weight=0.5), teacher, student, adaptor, adaptor
    )
    distiller.log_every_steps = 2
    first_32 = {key: value[:32] for key, value in data.items()}
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(first_32, 8), num_epochs=2)
    with open(tmp_path / "logs" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [2, 4, 6, 8]  # 4 steps per epoch, counted across epochs
    for record in records:
        assert {"epoch", "loss", "lr", "unweighted_kd_loss", "unweighted_hard_label_loss"} <= set(record)
        assert record["lr"] == 0.1 and record["epoch"] == (record["step"] - 1) // 4 + 1
        # The logged terms are averages over the same batches, so the weighted sum still holds.
        weighted = record["unweighted_kd_loss"] + 0.5 * record["unweighted_hard_label_loss"]
        assert record["loss"] == pytest.approx(weighted, rel=1e-5)


def test_weight_schedules_apply_per_step_and_leave_the_config_alone(tmp_path, teacher, student, data):
    d_config = DistillationConfig(
        kd_loss_weight=2, kd_loss_weight_scheduler="linear_decay", hard_label_weight=0.5
    )
    config = train_config(tmp_path, log_dir=str(tmp_path / "logs"))
    distiller = BasicDistiller(config, d_config, teacher, student, adaptor, adaptor)
    distiller.log_every_steps = 1
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_steps=4)
    assert (d_config.kd_loss_weight, d_config.kd_loss_weight_scheduler) == (2, "linear_decay")
    with open(tmp_path / "logs" / "metrics.jsonl") as f:
        for record in map(json.loads, f):
            factor = 1 - (record["step"] - 1) / 4  # the weight in force while the step's batch ran
            expected = 2 * factor * record["unweighted_kd_loss"] + 0.5 * record["unweighted_hard_label_loss"]
            assert record["loss"] == pytest.approx(expected, rel=1e-5)


def test_bf16_autocast_on_the_cpu_stays_finite(tmp_path, teacher, student, data):
    dtypes = []
    student.classifier.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    distiller = general_distiller(
        tmp_path, teacher, student, {"log_dir": str(tmp_path / "logs"), "mixed_precision": "bf16"}
    )
    distiller.log_every_steps = 1
    distiller.train(torch.optim.AdamW(student.parameters(), lr=1e-3), dict_loader(data, 16), num_steps=3)
    assert set(dtypes) == {torch.bfloat16}
    with open(tmp_path / "logs" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 3
    assert all(torch.isfinite(torch.tensor(value)) for r in records for value in r.values())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in student.parameters())


def test_fp16_on_the_cpu_warns_and_runs_in_float32(tmp_path, caplog, teacher, student, data):
    dtypes = []
    student.classifier.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    with caplog.at_level(logging.WARNING):
        distiller = general_distiller(
            tmp_path, teacher, student, {"log_dir": str(tmp_path / "logs"), "fp16": True}
        )
    assert any("fp16" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    distiller.log_every_steps = 1
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_steps=3)
    assert dtypes == [torch.float32] * 3
    with open(tmp_path / "logs" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 3
    assert all(torch.isfinite(torch.tensor(value)) for r in records for value in r.values())
    assert all(p.dtype == torch.float32 for p in student.parameters())


def count_forwards(model):
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(1))
    return calls


def test_cached_logits_replace_the_teachers_after_the_first_epoch(tmp_path, teacher, student, data):
    calls, student_calls = count_forwards(teacher), count_forwards(student)
    d_config = DistillationConfig(is_caching_logits=True, hard_label_weight=0.5)
    distiller = BasicDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)
    # Which batch each loss saw, and which teacher logits: the cache must keep them together.
    batches_seen, logits_seen = [], []
    adaptor_S, compute_loss = distiller.adaptor_S, distiller.compute_loss

    def recording_adaptor_S(batch, model_outputs):
        batches_seen.append(batch)
        return adaptor_S(batch, model_outputs)

    def recording_compute_loss(results_S, results_T):
        logits_seen.append(results_T["logits"][0])
        return compute_loss(results_S, results_T)

    distiller.adaptor_S, distiller.compute_loss = recording_adaptor_S, recording_compute_loss
    saved = {}
    distiller.train(
        torch.optim.SGD(student.parameters(), lr=0.1),
        dict_loader(data, 16),
        num_epochs=3,
        callback=lambda model, step: saved.update({step: state_of(model)}),
    )
    assert len(calls) == 4 and len(student_calls) == 12  # one teacher pass over the 4 batches
    with torch.no_grad():
        for batch, logits_T in zip(batches_seen, logits_seen):
            torch.testing.assert_close(logits_T, teacher(**batch)["logits"])
    assert sorted(saved) == [4, 8, 12]
    assert not torch.equal(saved[8]["classifier.weight"], saved[12]["classifier.weight"])

    teachers = [TinyClassifier(32, seed=5), TinyClassifier(32, seed=6)]
    counts = [count_forwards(t) for t in teachers]
    distiller = MultiTeacherDistiller(
        train_config(tmp_path / "multi"), d_config, teachers, student, adaptor, adaptor
    )
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_epochs=2)
    assert [len(c) for c in counts] == [4, 4]


def test_tuple_and_mapping_batches_and_extra_arguments(tmp_path, teacher, student, data):
    tuples = DataLoader(list(zip(data["input_ids"], data["attention_mask"], data["labels"])), batch_size=16)
    distiller = BasicDistiller(
        train_config(tmp_path),
        DistillationConfig(hard_label_weight=1),
        teacher,
        student,
        tuple_adaptor,
        tuple_adaptor,
    )
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), tuples, num_steps=2, marker="tuple")
    assert {kw["marker"] for kw in teacher.seen_kwargs + student.seen_kwargs} == {"tuple"}

    seen = []

    def postprocess(batch):
        seen.append(batch["ids"].device.type)
        return BatchEncoding(
            {"input_ids": batch["ids"], "attention_mask": batch["mask"], "labels": batch["y"]}
        )

    raw = {"ids": data["input_ids"], "mask": data["attention_mask"], "y": data["labels"]}
    trainer = BasicTrainer(train_config(tmp_path / "mapping"), student, adaptor)
    trainer.train(
        torch.optim.SGD(student.parameters(), lr=0.1),
        dict_loader(raw, 16),
        num_steps=2,
        batch_postprocessor=postprocess,
    )
    assert seen == ["cpu", "cpu"]


def test_dict_batches_tuple_batches_and_a_postprocessor_train_the_same(tmp_path, data):
    postprocessed = []

    def to_dict(batch):
        postprocessed.append(len(batch[0]))
        return dict(zip(("input_ids", "attention_mask", "labels"), batch))

    first_32 = {key: value[:32] for key, value in data.items()}
    tuples = list(zip(first_32["input_ids"], first_32["attention_mask"], first_32["labels"]))
    runs = [
        (dict_loader(first_32, 8), adaptor, None),  # model(**batch)
        (DataLoader(tuples, batch_size=8), tuple_adaptor, None),  # model(*batch)
        (DataLoader(tuples, batch_size=8), adaptor, to_dict),
    ]  # postprocessed into dicts
    weights = []
    for index, (loader, run_adaptor, postprocessor) in enumerate(runs):
        model = TinyClassifier(16, seed=2)
        trainer = BasicTrainer(train_config(tmp_path / str(index)), model, run_adaptor)
        trainer.train(
            torch.optim.SGD(model.parameters(), lr=0.5),
            loader,
            num_epochs=1,
            batch_postprocessor=postprocessor,
        )
        weights.append(state_of(model))
    assert postprocessed == [8, 8, 8, 8]
    assert not torch.equal(weights[0]["classifier.weight"], TinyClassifier(16, seed=2).classifier.weight)
    for other in weights[1:]:
        for key in weights[0]:
            torch.testing.assert_close(other[key], weights[0][key], msg=key)


@pytest.mark.parametrize(
    "print_freq, length, ckpt_steps, expected",
    [
        (4, {"num_epochs": 2}, None, [2, 4, 6, 8, 10, 12, 14, 16]),  # 8 steps per epoch // 4
        (3, {"num_epochs": 2}, None, [2, 4, 6, 8, 10, 12, 14, 16]),  # 8 // 3 = 2
        (20, {"num_epochs": 2}, None, [8, 16]),  # 8 // 20 = 0: once per epoch
        (2, {"num_steps": 6}, 4, [2, 4, 6]),  # per ckpt_steps (4 // 2), and the last step
    ],
)
def test_print_freq_is_textbrewers_number_of_logs_per_epoch(
    tmp_path, student, data, print_freq, length, ckpt_steps, expected
):
    config = train_config(tmp_path, log_dir=str(tmp_path / "logs"), ckpt_steps=ckpt_steps)
    trainer = BasicTrainer(config, student, adaptor)  # the loop that counts is the distillers' too
    trainer.print_freq = print_freq
    first_32 = {key: value[:32] for key, value in data.items()}
    trainer.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(first_32, 4), **length)
    with open(tmp_path / "logs" / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == expected


def test_a_subclass_adds_its_own_trained_module(tmp_path, teacher, student, data):
    """The BERT-EMD tutorial's pattern: extra modules in projs, compute_loss overridden."""

    class ExtraTermDistiller(BasicDistiller):
        def __init__(self, *args):
            super().__init__(*args)
            self.extra = nn.Linear(16, 32)
            self.projs.append(self.extra)
            self.projs_group.append({"lr": 0.05})

        def compute_loss(self, results_S, results_T):
            total, losses = self.compute_prediction_loss(results_S, results_T)
            extra = F.mse_loss(self.extra(results_S["hidden"][-1].float()), results_T["hidden"][-1])
            losses["unweighted_extra"] = extra
            return total + extra, losses

    distiller = ExtraTermDistiller(
        train_config(tmp_path), DistillationConfig(), teacher, student, adaptor, adaptor
    )
    before = distiller.extra.weight.detach().clone()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    distiller.train(optimizer, dict_loader(data, 16), num_steps=2)
    assert optimizer.param_groups[-1]["lr"] == 0.05
    assert not torch.equal(distiller.extra.weight, before)


def test_the_core_api_example_runs(tmp_path, monkeypatch):
    """distillation/README.md's example of the core (its one python block that trains), run as written."""
    blocks = re.findall(r"```python\n(.*?)```", read_repo_text("distillation/README.md"), flags=re.S)
    examples = [block for block in blocks if ".train(" in block]
    assert len(examples) == 1, f"{len(examples)} python blocks that train in distillation/README.md"
    monkeypatch.chdir(tmp_path)
    exec(compile(examples[0], "distillation/README.md", "exec"), {"__name__": "__main__"})
    assert checkpoint_steps(tmp_path / "saved_models")


def test_padded_length_reaches_mmd_and_leaves_a_cut_batch_as_the_padded_one(tmp_path, teacher, student, data):
    """main.py cuts every batch to its longest example; with padded_length set, the masked mmd
    of the cut batch equals the one of the batch padded to that length."""
    batch = {key: value[:8].clone() for key, value in data.items()}
    batch["attention_mask"][:, 5:] = 0
    batch["input_ids"] = batch["input_ids"] * batch["attention_mask"]
    cut = {key: value[:, :5] if value.dim() == 2 else value for key, value in batch.items()}
    values = {}
    for name, inputs, padded_length in [
        ("padded", batch, None),
        ("cut", cut, None),
        ("cut, configured", cut, LENGTH),
    ]:
        distiller = general_distiller(tmp_path, teacher, student, padded_length=padded_length)
        with torch.no_grad():
            results_T = adaptor(inputs, teacher(**inputs))
            _, losses = distiller.compute_loss(adaptor(inputs, student(**inputs)), results_T)
        values[name] = losses["unweighted_hidden_mmd_0-1_0-2"].item()
    assert values["cut, configured"] == pytest.approx(values["padded"], rel=1e-5)
    assert values["cut"] != pytest.approx(values["padded"], rel=1e-2)  # the cut alone changes it


def test_a_registered_loss_without_padded_length_still_works(tmp_path, teacher, student, data):
    from distillation import MATCH_LOSS_MAP, register_new

    register_new("MATCH_LOSS_MAP", "l1_test", lambda S, T, mask=None: (S - T).abs().mean())
    try:
        d_config = DistillationConfig(
            padded_length=LENGTH,
            intermediate_matches=[
                {
                    "layer_T": 0,
                    "layer_S": 0,
                    "feature": "hidden",
                    "loss": "l1_test",
                    "weight": 1,
                    "proj": ["linear", 16, 32],
                }
            ],
        )
        distiller = GeneralDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)
        batch = whole(data)
        with torch.no_grad():
            results_T = adaptor(batch, teacher(**batch))
        _, losses = distiller.compute_loss(adaptor(batch, student(**batch)), results_T)
        assert losses["unweighted_hidden_l1_test_0_0"] > 0
    finally:
        del MATCH_LOSS_MAP["l1_test"]
    with pytest.raises(ValueError, match="padded_length must be a positive integer or None, got 0"):
        DistillationConfig(padded_length=0)


def test_each_distiller_says_which_features_it_reads(tmp_path, teacher, student):
    """A pipeline asks its models for these features only, and the logit cache is allowed only
    when the loss reads nothing of the teachers but their logits."""
    caching = DistillationConfig(is_caching_logits=True)
    assert general_distiller(tmp_path, teacher, student).features_read() == {"hidden", "attention"}
    only_hidden = GeneralDistiller(
        train_config(tmp_path),
        DistillationConfig(intermediate_matches=[m for m in MATCHES if m["feature"] == "hidden"]),
        teacher,
        student,
        adaptor,
        adaptor,
    )
    assert only_hidden.features_read() == {"hidden"}
    plain = GeneralDistiller(train_config(tmp_path), caching, teacher, student, adaptor, adaptor)
    assert plain.features_read() == set() and plain.caches_logits()
    multi = MultiTeacherDistiller(
        train_config(tmp_path), caching, [teacher, teacher], student, adaptor, adaptor
    )
    assert multi.features_read() == set() and multi.caches_logits()
    assert BasicTrainer(train_config(tmp_path), student, adaptor).features_read() == set()

    class OwnLoss(BasicDistiller):  # a compute_loss of its own may read anything
        def compute_loss(self, results_S, results_T):
            return self.compute_prediction_loss(results_S, results_T)

    own = OwnLoss(train_config(tmp_path), caching, teacher, student, adaptor, adaptor)
    assert own.features_read() == {"hidden", "attention"} and not own.caches_logits()
