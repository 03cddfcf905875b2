"""The distillers on tiny BERT classifiers (CPU, dropout off): loss bookkeeping, training,
accumulation, checkpoints, precision, multiple teachers, logit caching, logging and batches."""
import copy
import json
import logging
import os
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import BatchEncoding, BertConfig, BertModel

from distillation import (BasicDistiller, BasicTrainer, DistillationConfig, GeneralDistiller,
                          MultiTeacherDistiller, TrainingConfig)
from distillation.io import safe_torch_load

VOCAB, LENGTH, SIGNAL = 20, 8, 4  # token SIGNAL in a sentence means label 1
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TinyClassifier(nn.Module):
    """BERT (eager attention, no dropout) + a linear head on position 0.

    forward returns 'logits' (batch, 2), 'hidden' (layers + 1 of (batch, length, hidden)),
    'attention' (layers of (batch, heads, length, length)) and, with labels, the per-example
    cross-entropy 'loss' (batch,).
    """

    def __init__(self, hidden_size, seed, layers=2):
        super().__init__()
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=VOCAB, hidden_size=hidden_size, num_hidden_layers=layers,
                            num_attention_heads=2, intermediate_size=2 * hidden_size,
                            max_position_embeddings=LENGTH, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, attn_implementation="eager")
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(hidden_size, 2)
        self.seen_kwargs = []

    def forward(self, input_ids, attention_mask, labels=None, **kwargs):
        self.seen_kwargs.append(kwargs)
        encoded = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True, output_attentions=True)
        logits = self.classifier(encoded.last_hidden_state[:, 0])
        outputs = {"logits": logits, "hidden": encoded.hidden_states, "attention": encoded.attentions}
        if labels is not None:
            outputs["loss"] = F.cross_entropy(logits.float(), labels, reduction="none")
        return outputs


def adaptor(batch, outputs):
    """For dict batches {'input_ids', 'attention_mask', 'labels'}."""
    results = {"logits": outputs["logits"], "hidden": outputs["hidden"],
               "attention": outputs["attention"], "inputs_mask": batch["attention_mask"]}
    if "loss" in outputs:
        results["losses"] = outputs["loss"]
    return results


def tuple_adaptor(batch, outputs):
    """For tuple batches (input_ids, attention_mask, labels)."""
    return {"logits": outputs["logits"], "losses": outputs["loss"], "inputs_mask": batch[1],
            "labels": batch[2]}


def make_data(n=64, seed=0):
    """Random sentences of 3..LENGTH tokens; label 1 where SIGNAL occurs."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(SIGNAL + 1, VOCAB, (n, LENGTH), generator=g)
    lengths = torch.randint(3, LENGTH + 1, (n,), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    for i in range(n):
        if labels[i]:
            ids[i, torch.randint(1, int(lengths[i]), (1,), generator=g)] = SIGNAL
    ids = ids * mask  # padding id 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class DictDataset(Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(next(iter(self.data.values())))

    def __getitem__(self, i):
        return {key: value[i] for key, value in self.data.items()}


def dict_loader(data, batch_size):
    return DataLoader(DictDataset(data), batch_size=batch_size, shuffle=False)


def whole(data):
    return {key: value.clone() for key, value in data.items()}


def train_config(tmp_path, **settings):
    return TrainingConfig(device="cpu", output_dir=str(tmp_path / "out"), **settings)


def checkpoint_steps(output_dir):
    names = [f for f in os.listdir(output_dir) if re.fullmatch(r"gs\d+\.pkl", f)]
    return sorted(int(name[2:-4]) for name in names)


def state_of(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


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
    {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 2,
     "proj": ["linear", 16, 32]},
    {"layer_T": [0, 2], "layer_S": [0, 1], "feature": "hidden", "loss": "mmd", "weight": 0.5},
    {"layer_T": 1, "layer_S": 1, "feature": "attention", "loss": "attention_mse", "weight": 3},
    {"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1,
     "proj": ["relu", 16, 32, {"lr": 0.01}]},
]


def general_distiller(tmp_path, teacher, student, **settings):
    d_config = DistillationConfig(temperature=2, hard_label_weight=0.5, kd_loss_weight=1.5,
                                  intermediate_matches=MATCHES, **settings)
    return GeneralDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)


def kd_ce(logits_S, logits_T, temperature):
    return -(F.softmax(logits_T / temperature, -1) * F.log_softmax(logits_S / temperature, -1)).sum(-1).mean()


def masked_mse(a, b, mask):
    keep = mask.bool()
    return ((a[keep] - b[keep]) ** 2).mean()


# ----- compute_loss ----------------------------------------------------------------------------

def test_general_distiller_loss_is_the_weighted_sum_of_its_parts(tmp_path, teacher, student, data):
    distiller = general_distiller(tmp_path, teacher, student)
    batch = whole(data)
    with torch.no_grad():
        results_T = adaptor(batch, teacher(**batch))
    results_S = adaptor(batch, student(**batch))
    total, losses = distiller.compute_loss(results_S, results_T)

    assert set(losses) == {"unweighted_kd_loss", "unweighted_hard_label_loss",
                           "unweighted_hidden_hidden_mse_1_2", "unweighted_hidden_mmd_0-1_0-2",
                           "unweighted_attention_attention_mse_1_1", "unweighted_hidden_hidden_mse_0_0"}
    weighted = (1.5 * losses["unweighted_kd_loss"] + 0.5 * losses["unweighted_hard_label_loss"]
                + 2 * losses["unweighted_hidden_hidden_mse_1_2"] + 0.5 * losses["unweighted_hidden_mmd_0-1_0-2"]
                + 3 * losses["unweighted_attention_attention_mse_1_1"] + losses["unweighted_hidden_hidden_mse_0_0"])
    torch.testing.assert_close(total, weighted)

    # The parts themselves, recomputed from the models' outputs.
    mask = batch["attention_mask"]
    torch.testing.assert_close(losses["unweighted_kd_loss"], kd_ce(results_S["logits"], results_T["logits"], 2))
    torch.testing.assert_close(losses["unweighted_hard_label_loss"],
                               F.cross_entropy(results_S["logits"], batch["labels"]))
    linear, relu = distiller.projs[0], distiller.projs[3]
    torch.testing.assert_close(losses["unweighted_hidden_hidden_mse_1_2"],
                               masked_mse(linear(results_S["hidden"][1]), results_T["hidden"][2], mask))
    torch.testing.assert_close(losses["unweighted_hidden_hidden_mse_0_0"],
                               masked_mse(relu(results_S["hidden"][0]), results_T["hidden"][0], mask))
    assert distiller.projs[1] is None and distiller.projs[2] is None
    assert distiller.projs_group[3] == {"lr": 0.01}


def test_basic_distiller_accepts_tuples_and_applies_probability_shift(tmp_path, teacher, student):
    d_config = DistillationConfig(temperature=1, probability_shift=True)
    distiller = BasicDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)
    logits_S = torch.tensor([[0.5, 0.1], [0.2, 0.3], [1.0, -1.0]])
    logits_T = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, -2.0]])
    labels = torch.tensor([1, 1, 0])  # the teacher is wrong on the first example only
    shifted_T = torch.tensor([[0.0, 2.0], [0.0, 3.0], [1.0, -2.0]])
    total, losses = distiller.compute_loss({"logits": (logits_S,), "labels": labels},
                                           {"logits": [logits_T]})
    torch.testing.assert_close(losses["unweighted_kd_loss"], kd_ce(logits_S, shifted_T, 1))
    torch.testing.assert_close(total, losses["unweighted_kd_loss"])


def test_logits_mask_selects_rows_before_kd(tmp_path, teacher, student):
    distiller = BasicDistiller(train_config(tmp_path), DistillationConfig(temperature=3),
                               teacher, student, adaptor, adaptor)
    torch.manual_seed(0)
    logits_S, logits_T = torch.randn(2, 4, 5), torch.randn(2, 4, 5)  # per-token logits
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    _, losses = distiller.compute_loss({"logits": logits_S, "logits_mask": mask},
                                       {"logits": logits_T, "logits_mask": mask})
    rows = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    expected = kd_ce(torch.stack([logits_S[r] for r in rows]), torch.stack([logits_T[r] for r in rows]), 3)
    torch.testing.assert_close(losses["unweighted_kd_loss"], expected)


def test_a_temperature_scheduler_sets_per_example_temperatures(tmp_path, teacher, student):
    d_config = DistillationConfig(temperature=4, temperature_scheduler=["cwsm", 2.0])
    distiller = BasicDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)
    logits_S, logits_T = torch.tensor([[3.0, 0.0], [0.1, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    confidence = 1 / (F.softmax(logits_S, -1).max(-1).values + 1e-3)
    tau = 4 + (confidence.mean() - confidence) * 2.0
    _, losses = distiller.compute_loss({"logits": logits_S}, {"logits": logits_T})
    expected = sum(kd_ce(logits_S[i:i + 1], logits_T[i:i + 1], tau[i]) for i in range(2)) / 2
    torch.testing.assert_close(losses["unweighted_kd_loss"], expected)
    assert d_config.temperature == 4


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


# ----- training ------------------------------------------------------------------------------

def test_projections_train_and_the_teacher_does_not_change(tmp_path, teacher, student, data):
    teacher_before = state_of(teacher)
    distiller = general_distiller(tmp_path, teacher, student)
    projections_before = [state_of(p) for p in distiller.projs if p is not None]
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    with distiller:
        distiller.train(optimizer, dict_loader(data, 16), num_steps=3)
        groups = len(optimizer.param_groups)
        distiller.train(optimizer, dict_loader(data, 16), num_steps=1)  # the groups join once

    assert groups == len(optimizer.param_groups) == 3  # the student's and one per projection
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for proj, before in zip([p for p in distiller.projs if p is not None], projections_before):
        assert all(id(p) in in_optimizer for p in proj.parameters())
        assert not torch.equal(proj.weight if hasattr(proj, "weight") else proj[0].weight,
                               before["weight" if "weight" in before else "0.weight"])
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3, 0.01]
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
    before = kd_to_teacher()
    distiller = BasicDistiller(train_config(tmp_path / "kd"), DistillationConfig(temperature=1),
                               teacher, student, adaptor, adaptor)
    distiller.train(torch.optim.AdamW(student.parameters(), lr=3e-3), dict_loader(data, 16), num_steps=30)
    assert kd_to_teacher() < 0.8 * before


def test_gradient_accumulation_equals_one_big_batch(tmp_path, teacher, student, data):
    students = [student, copy.deepcopy(student)]
    d_config = DistillationConfig(temperature=2, hard_label_weight=0.5)
    for model, (accumulation, batch_size) in zip(students, [(2, 16), (1, 32)]):
        distiller = BasicDistiller(train_config(tmp_path / str(accumulation), gradient_accumulation_steps=accumulation),
                                   d_config, teacher, model, adaptor, adaptor)
        distiller.train(torch.optim.SGD(model.parameters(), lr=0.5), dict_loader(data, batch_size),
                        num_steps=2, max_grad_norm=1.0)
    changed = state_of(students[0])["classifier.weight"]
    assert not torch.equal(changed, TinyClassifier(16, seed=2).classifier.weight.detach())
    accumulated, whole_batch = state_of(students[0]), state_of(students[1])
    for key in accumulated:
        torch.testing.assert_close(accumulated[key], whole_batch[key], rtol=1e-5, atol=1e-6)


def test_checkpoints_at_the_promised_steps(tmp_path, student, data):
    saved = {}

    def callback(model, step):
        saved[step] = state_of(model)
        model.eval()

    trainer = BasicTrainer(train_config(tmp_path, ckpt_frequency=2), student, adaptor)
    trainer.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16),
                  num_epochs=2, callback=callback)  # 4 steps per epoch
    out = tmp_path / "out"
    assert checkpoint_steps(out) == sorted(saved) == [2, 4, 6, 8]
    assert_same_state(safe_torch_load(out / "gs6.pkl"), saved[6])
    assert student.training  # back in training mode after the callback

    steps = []
    trainer = BasicTrainer(train_config(tmp_path / "steps", ckpt_steps=2), student, adaptor)
    trainer.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16),
                  num_steps=5, callback=lambda model, step: steps.append(step))
    assert checkpoint_steps(tmp_path / "steps" / "out") == steps == [2, 4, 5]

    # Every second epoch and the last one; accumulation 2 -> 2 steps per epoch.
    trainer = BasicTrainer(train_config(tmp_path / "epochs", ckpt_epoch_frequency=2,
                                        gradient_accumulation_steps=2), student, adaptor)
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
    distiller = BasicDistiller(config, DistillationConfig(hard_label_weight=1), teacher, student, adaptor, adaptor)
    distiller.log_every_steps = 2
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 8), num_steps=6)
    with open(tmp_path / "logs" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [2, 4, 6]
    for record in records:
        assert {"epoch", "loss", "lr", "unweighted_kd_loss", "unweighted_hard_label_loss"} <= set(record)
        assert record["lr"] == 0.1 and record["epoch"] == 1
        assert record["loss"] == pytest.approx(record["unweighted_kd_loss"] + record["unweighted_hard_label_loss"], rel=1e-5)


def test_weight_schedules_apply_per_step_and_leave_the_config_alone(tmp_path, teacher, student, data):
    d_config = DistillationConfig(kd_loss_weight=2, kd_loss_weight_scheduler="linear_decay",
                                  hard_label_weight=0.5)
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
    config = TrainingConfig(device="cpu", output_dir=str(tmp_path / "out"), log_dir=str(tmp_path / "logs"),
                            mixed_precision="bf16")
    distiller = general_distiller(tmp_path, teacher, student)
    distiller.t_config = config
    distiller.log_every_steps = 1
    distiller.train(torch.optim.AdamW(student.parameters(), lr=1e-3), dict_loader(data, 16), num_steps=3)
    assert set(dtypes) == {torch.bfloat16}
    with open(tmp_path / "logs" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 3
    assert all(torch.isfinite(torch.tensor(value)) for r in records for value in r.values())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in student.parameters())


def test_fp16_on_the_cpu_warns_and_runs_in_float32(tmp_path, caplog, student, data):
    dtypes = []
    student.classifier.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    with caplog.at_level(logging.WARNING):
        config = TrainingConfig(device="cpu", output_dir=str(tmp_path / "out"), fp16=True)
    assert any("fp16" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    BasicTrainer(config, student, adaptor).train(torch.optim.SGD(student.parameters(), lr=0.1),
                                                 dict_loader(data, 16), num_steps=2)
    assert set(dtypes) == {torch.float32}


def count_forwards(model):
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(1))
    return calls


def test_cached_logits_replace_the_teachers_after_the_first_epoch(tmp_path, teacher, student, data):
    calls = count_forwards(teacher)
    d_config = DistillationConfig(is_caching_logits=True, hard_label_weight=0.5)
    distiller = BasicDistiller(train_config(tmp_path), d_config, teacher, student, adaptor, adaptor)
    saved = {}
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_epochs=3,
                    callback=lambda model, step: saved.update({step: state_of(model)}))
    assert len(calls) == 4  # one pass over the 4 batches
    assert sorted(saved) == [4, 8, 12]
    assert not torch.equal(saved[8]["classifier.weight"], saved[12]["classifier.weight"])

    teachers = [TinyClassifier(32, seed=5), TinyClassifier(32, seed=6)]
    counts = [count_forwards(t) for t in teachers]
    distiller = MultiTeacherDistiller(train_config(tmp_path / "multi"), d_config, teachers, student,
                                      adaptor, adaptor)
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_epochs=2)
    assert [len(c) for c in counts] == [4, 4]


def test_an_unknown_adaptor_key_is_an_error(tmp_path, student, data):
    def misspelt(batch, outputs):
        return {"logits": outputs["logits"], "losses": outputs["loss"], "hiddens": outputs["hidden"]}
    trainer = BasicTrainer(train_config(tmp_path), student, misspelt)
    with pytest.raises(ValueError, match="hiddens") as error:
        trainer.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(data, 16), num_steps=1)
    assert "inputs_mask" in str(error.value)  # the known keys are listed


def test_tuple_and_mapping_batches_and_extra_arguments(tmp_path, teacher, student, data):
    tuples = DataLoader(list(zip(data["input_ids"], data["attention_mask"], data["labels"])), batch_size=16)
    distiller = BasicDistiller(train_config(tmp_path), DistillationConfig(hard_label_weight=1),
                               teacher, student, tuple_adaptor, tuple_adaptor)
    distiller.train(torch.optim.SGD(student.parameters(), lr=0.1), tuples, num_steps=2, marker="tuple")
    assert {kw["marker"] for kw in teacher.seen_kwargs + student.seen_kwargs} == {"tuple"}

    renamed, seen = [], []

    def postprocess(batch):
        seen.append(batch["ids"].device.type)
        return BatchEncoding({"input_ids": batch["ids"], "attention_mask": batch["mask"], "labels": batch["y"]})
    raw = {"ids": data["input_ids"], "mask": data["attention_mask"], "y": data["labels"]}
    trainer = BasicTrainer(train_config(tmp_path / "mapping"), student, adaptor)
    trainer.train(torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(raw, 16), num_steps=2,
                  batch_postprocessor=postprocess)
    assert seen == ["cpu", "cpu"]


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

    distiller = ExtraTermDistiller(train_config(tmp_path), DistillationConfig(), teacher, student, adaptor, adaptor)
    before = distiller.extra.weight.detach().clone()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    distiller.train(optimizer, dict_loader(data, 16), num_steps=2)
    assert optimizer.param_groups[-1]["lr"] == 0.05
    assert not torch.equal(distiller.extra.weight, before)


def test_the_core_api_example_runs(tmp_path, monkeypatch):
    """The README's example of the core, run as written."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## The `distillation` core")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__main__"})
    assert checkpoint_steps(tmp_path / "saved_models")


def test_padded_length_reaches_mmd_and_leaves_a_cut_batch_as_the_padded_one(tmp_path, teacher, student, data):
    """main.py cuts every batch to its longest example; with padded_length set, the masked mmd
    of the cut batch equals the one of the batch padded to that length."""
    batch = {key: value[:8].clone() for key, value in data.items()}
    batch["attention_mask"][:, 5:] = 0
    batch["input_ids"] = batch["input_ids"] * batch["attention_mask"]
    cut = {key: value[:, :5] if value.dim() == 2 else value for key, value in batch.items()}
    values = {}
    for name, inputs, padded_length in [("padded", batch, None), ("cut", cut, None),
                                        ("cut, configured", cut, LENGTH)]:
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
        d_config = DistillationConfig(padded_length=LENGTH, intermediate_matches=[
            {"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "l1_test", "weight": 1,
             "proj": ["linear", 16, 32]}])
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
