"""The distillers at work on tiny BERT classifiers (CPU, dropout 0): how the losses are put
together, what the training loop promises (frozen teachers, projections in the optimizer,
accumulation, checkpoint steps, logs, logit caching, precision) and the errors it gives."""
import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertConfig

from distillation import (BasicDistiller, BasicTrainer, DistillationConfig, GeneralDistiller,
                          MultiTeacherDistiller, TrainingConfig)
from distillation.distillers import probability_shift
from distillation.io import safe_torch_load
from distillation.losses import att_mse_loss, hid_mse_loss, kd_ce_loss, mmd_loss
from modeling import BertForGLUESimple, BertForGLUESimpleAdaptor

VOCAB, LENGTH, NUM_LABELS = 50, 8, 2
CLS, CUE = 2, 10  # token 10 + label at position 1 gives the label away: a separable task
FIELDS = ("input_ids", "attention_mask", "token_type_ids", "labels")

# Features of the student (hidden 16) matched to the teacher's (hidden 32).
MATCHES = [
    {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1,
     "proj": ["linear", 16, 32, {"lr": 0.01}]},
    {"layer_T": [2, 2], "layer_S": [1, 1], "feature": "hidden", "loss": "mmd", "weight": 0.5,
     "proj": ["linear", 16, 32]},
    {"layer_T": 1, "layer_S": 0, "feature": "attention", "loss": "attention_mse", "weight": 2},
]
MATCH_NAMES = ["unweighted_hidden_hidden_mse_1_2", "unweighted_hidden_mmd_1-1_2-2",
               "unweighted_attention_attention_mse_0_1"]


# ----- models, data, distillers ------------------------------------------------------------------

def classifier(hidden, seed, features=False):
    """A 2-layer BERT classifier; features: also return hidden states and attention maps."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=LENGTH, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertForGLUESimple(config, NUM_LABELS, output_hidden_states=features, output_attentions=features)


def examples(n, seed=0):
    """(input_ids, attention_mask, token_type_ids, labels): (n, LENGTH) x 3 and (n,)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_LABELS, (n,), generator=generator)
    input_ids = torch.randint(CUE + NUM_LABELS, VOCAB, (n, LENGTH), generator=generator)
    input_ids[:, 0], input_ids[:, 1] = CLS, CUE + labels
    lengths = torch.randint(3, LENGTH + 1, (n,), generator=generator)
    attention_mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    return input_ids * attention_mask, attention_mask, torch.zeros_like(input_ids), labels


def dict_loader(n, batch_size, seed=0):
    rows = [dict(zip(FIELDS, row)) for row in zip(*examples(n, seed))]
    return DataLoader(rows, batch_size=batch_size)


def tuple_loader(n, batch_size, seed=0):
    return DataLoader(TensorDataset(*examples(n, seed)), batch_size=batch_size)


def training_config(tmp_path, **settings):
    return TrainingConfig(output_dir=str(tmp_path / "out"), device="cpu", **settings)


def general_distiller(tmp_path, **train_settings):
    teacher, student = classifier(32, seed=1, features=True), classifier(16, seed=2, features=True)
    distill_config = DistillationConfig(temperature=4, kd_loss_weight=0.8, hard_label_weight=0.5,
                                        intermediate_matches=MATCHES)
    return GeneralDistiller(training_config(tmp_path, **train_settings), distill_config, teacher,
                            student, BertForGLUESimpleAdaptor, BertForGLUESimpleAdaptor)


def basic_distiller(tmp_path, train_settings=None, **distill_settings):
    return BasicDistiller(training_config(tmp_path, **(train_settings or {})),
                          DistillationConfig(**distill_settings), classifier(32, seed=1),
                          classifier(16, seed=2), BertForGLUESimpleAdaptor, BertForGLUESimpleAdaptor)


def first_batch(n=8):
    return next(iter(dict_loader(n, n)))


def snapshot(module):
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def mean_loss(distiller, loader):
    with torch.no_grad():
        totals = [distiller.train_on_batch(batch, {})[0] for batch in loader]
    return sum(totals).item() / len(totals)


def checkpoint_steps(output_dir):
    return sorted(int(p.name[2:-4]) for p in output_dir.glob("gs*.pkl"))


# ----- GeneralDistiller: the loss and its parts --------------------------------------------------

def test_general_distiller_total_is_the_weighted_sum_of_its_parts(tmp_path):
    distiller = general_distiller(tmp_path)
    batch = first_batch()
    total, losses = distiller.train_on_batch(batch, {})
    assert sorted(losses) == sorted(["unweighted_kd_loss", "unweighted_hard_label_loss", *MATCH_NAMES])
    weighted = 0.8 * losses["unweighted_kd_loss"] + 0.5 * losses["unweighted_hard_label_loss"]
    weighted = weighted + sum(match["weight"] * losses[name] for match, name in zip(MATCHES, MATCH_NAMES))
    assert total.item() == pytest.approx(weighted.item(), rel=1e-6)

    # Each part from the models' own outputs: the right layers, projections and mask.
    with torch.no_grad():
        out_S, out_T = distiller.model_S(**batch), distiller.model_T(**batch)
        hidden_proj, pair_proj = distiller.projs[0], distiller.projs[1]
        hs_S, hs_T, mask = out_S["hidden_states"], out_T["hidden_states"], batch["attention_mask"]
        expected = {
            "unweighted_kd_loss": kd_ce_loss(out_S["logits"], out_T["logits"], 4),
            "unweighted_hard_label_loss": torch.nn.functional.cross_entropy(out_S["logits"], batch["labels"]),
            MATCH_NAMES[0]: hid_mse_loss(hidden_proj(hs_S[1]), hs_T[2], mask),
            MATCH_NAMES[1]: mmd_loss([pair_proj(hs_S[1])] * 2, [hs_T[2]] * 2, mask),
            MATCH_NAMES[2]: att_mse_loss(out_S["attentions"][0], out_T["attentions"][1], mask),
        }
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value.item(), rel=1e-5), name

    total.backward()
    for proj in distiller.projs[:2]:
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert distiller.projs[2] is None
    assert all(p.grad is None for p in distiller.model_T.parameters())


def test_projections_join_the_optimizer_once_and_the_teacher_stays_frozen(tmp_path):
    distiller = general_distiller(tmp_path)
    teacher = distiller.model_T
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    teacher_before, proj_before = snapshot(teacher), snapshot(distiller.projs[0])
    optimizer = torch.optim.SGD(distiller.model_S.parameters(), lr=0.1)
    loader = dict_loader(16, 8)

    distiller.train(optimizer, loader, num_epochs=1)
    distiller.train(optimizer, loader, num_epochs=1)

    assert len(optimizer.param_groups) == 3  # the student, then one group per projection
    for group, proj in zip(optimizer.param_groups[1:], distiller.projs[:2]):
        assert [id(p) for p in group["params"]] == [id(p) for p in proj.parameters()]
    assert optimizer.param_groups[1]["lr"] == 0.01 and optimizer.param_groups[2]["lr"] == 0.1
    assert not torch.equal(distiller.projs[0].weight, proj_before["weight"])  # it was trained
    teacher_after = teacher.state_dict()
    assert all(torch.equal(teacher_before[key], teacher_after[key]) for key in teacher_before)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_multi_teacher_distiller_learns_from_the_average_of_the_teachers_logits(tmp_path):
    teachers = [classifier(32, seed=1), classifier(32, seed=3)]
    distiller = MultiTeacherDistiller(training_config(tmp_path), DistillationConfig(temperature=4),
                                      teachers, classifier(16, seed=2),
                                      BertForGLUESimpleAdaptor, BertForGLUESimpleAdaptor)
    batch = first_batch()
    total, losses = distiller.train_on_batch(batch, {})
    with torch.no_grad():
        logits_S = distiller.model_S(**batch)["logits"]
        average = sum(teacher(**batch)["logits"] for teacher in teachers) / 2
    expected = -(torch.softmax(average / 4, -1) * torch.log_softmax(logits_S / 4, -1)).sum(-1).mean()
    assert losses["unweighted_kd_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)  # hard_label_weight is 0


# ----- training makes progress, accumulation, batches ---------------------------------------------

def test_thirty_steps_lower_the_loss(tmp_path):
    loader = dict_loader(64, 8)
    trainer = BasicTrainer(training_config(tmp_path / "trainer"), classifier(16, seed=2), BertForGLUESimpleAdaptor)
    distiller = general_distiller(tmp_path / "distiller")
    for runner in (trainer, distiller):
        before = mean_loss(runner, loader)
        runner.train(torch.optim.AdamW(runner.model_S.parameters(), lr=3e-3), loader, num_steps=30)
        after = mean_loss(runner, loader)
        assert after < 0.7 * before, type(runner).__name__


def test_two_accumulated_batches_of_16_equal_one_batch_of_32(tmp_path):
    results = []
    for batch_size, accumulation in ((16, 2), (32, 1)):
        trainer = BasicTrainer(training_config(tmp_path / str(batch_size), gradient_accumulation_steps=accumulation),
                               classifier(16, seed=2), BertForGLUESimpleAdaptor)
        start = snapshot(trainer.model_S)
        trainer.train(torch.optim.SGD(trainer.model_S.parameters(), lr=0.5), dict_loader(64, batch_size), num_epochs=2)
        results.append(snapshot(trainer.model_S))
    accumulated, whole = results
    assert any(not torch.equal(start[key], whole[key]) for key in start)
    for key in whole:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=1e-4, atol=1e-6, msg=key)


def tuple_adaptor(batch, model_outputs):
    """For tuple batches (input_ids, attention_mask, token_type_ids, labels)."""
    return {"logits": model_outputs["logits"], "losses": model_outputs["loss"], "inputs_mask": batch[1]}


def test_dict_batches_tuple_batches_and_a_postprocessor_train_the_same(tmp_path):
    postprocessed = []

    def to_dict(batch):
        postprocessed.append(len(batch[0]))
        return dict(zip(FIELDS, batch))

    runs = [(dict_loader(32, 8), BertForGLUESimpleAdaptor, None),     # model(**batch)
            (tuple_loader(32, 8), tuple_adaptor, None),                # model(*batch)
            (tuple_loader(32, 8), BertForGLUESimpleAdaptor, to_dict)]  # postprocessed into dicts
    weights = []
    for index, (loader, adaptor, postprocessor) in enumerate(runs):
        trainer = BasicTrainer(training_config(tmp_path / str(index)), classifier(16, seed=2), adaptor)
        trainer.train(torch.optim.SGD(trainer.model_S.parameters(), lr=0.5), loader, num_epochs=1,
                      batch_postprocessor=postprocessor)
        weights.append(snapshot(trainer.model_S))
    assert postprocessed == [8, 8, 8, 8]
    for other in weights[1:]:
        for key in weights[0]:
            torch.testing.assert_close(other[key], weights[0][key], msg=key)


# ----- checkpoints and logs ------------------------------------------------------------------------

@pytest.mark.parametrize("settings, length, expected", [
    ({"ckpt_frequency": 2}, {"num_epochs": 2}, [2, 4, 6, 8]),
    ({"ckpt_epoch_frequency": 2}, {"num_epochs": 3}, [8, 12]),   # epoch 2, and the last epoch
    ({"ckpt_steps": 3}, {"num_steps": 7}, [3, 6, 7]),             # every 3 steps, and the last
])
def test_checkpoints_at_exactly_the_promised_steps(tmp_path, settings, length, expected):
    trainer = BasicTrainer(training_config(tmp_path, **settings), classifier(16, seed=2), BertForGLUESimpleAdaptor)
    seen = {}

    def callback(*, model, step):
        assert model is trainer.model_S
        seen[step] = snapshot(model)

    loader = dict_loader(32, 8)  # 4 steps per epoch
    trainer.train(torch.optim.SGD(trainer.model_S.parameters(), lr=0.5), loader, callback=callback, **length)
    assert checkpoint_steps(tmp_path / "out") == expected
    assert sorted(seen) == expected
    for step in expected:  # each file holds the student's weights of its own step
        saved = safe_torch_load(tmp_path / "out" / f"gs{step}.pkl")
        assert saved.keys() == seen[step].keys()
        assert all(torch.equal(saved[key], seen[step][key]) for key in saved)
    assert not all(torch.equal(seen[expected[0]][k], seen[expected[-1]][k]) for k in seen[expected[0]])


def test_metrics_jsonl_gets_a_line_every_log_every_steps_steps(tmp_path):
    distiller = basic_distiller(tmp_path, {"log_dir": str(tmp_path / "logs")}, hard_label_weight=0.5)
    distiller.log_every_steps = 2
    distiller.train(torch.optim.SGD(distiller.model_S.parameters(), lr=0.1), dict_loader(32, 8), num_epochs=2)
    records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [2, 4, 6, 8]
    for record in records:
        assert {"step", "loss", "unweighted_kd_loss", "unweighted_hard_label_loss", "lr"} <= set(record)
        assert record["lr"] == 0.1
        # The logged terms are averages over the same batches, so the weighted sum still holds.
        weighted = record["unweighted_kd_loss"] + 0.5 * record["unweighted_hard_label_loss"]
        assert record["loss"] == pytest.approx(weighted, rel=1e-5)


@pytest.mark.parametrize("print_freq, length, ckpt_steps, expected", [
    (4, {"num_epochs": 2}, None, [2, 4, 6, 8, 10, 12, 14, 16]),  # 8 steps per epoch // 4
    (3, {"num_epochs": 2}, None, [2, 4, 6, 8, 10, 12, 14, 16]),  # 8 // 3 = 2
    (20, {"num_epochs": 2}, None, [8, 16]),          # 8 // 20 = 0: once per epoch
    (2, {"num_steps": 6}, 4, [2, 4, 6]),             # per ckpt_steps (4 // 2), and the last step
])
def test_print_freq_is_textbrewers_number_of_logs_per_epoch(tmp_path, print_freq, length, ckpt_steps, expected):
    settings = {"log_dir": str(tmp_path / "logs"), "ckpt_steps": ckpt_steps}
    distiller = basic_distiller(tmp_path, settings, hard_label_weight=0.5)
    distiller.print_freq = print_freq
    distiller.train(torch.optim.SGD(distiller.model_S.parameters(), lr=0.1), dict_loader(32, 4), **length)
    records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == expected


# ----- the teachers' logit cache -----------------------------------------------------------------------

def test_cached_logits_run_the_teacher_during_the_first_epoch_only(tmp_path):
    distiller = basic_distiller(tmp_path, is_caching_logits=True)
    calls = {"teacher": 0, "student": 0}
    distiller.model_T.register_forward_hook(lambda *_: calls.__setitem__("teacher", calls["teacher"] + 1))
    distiller.model_S.register_forward_hook(lambda *_: calls.__setitem__("student", calls["student"] + 1))
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

    loader = dict_loader(32, 8)  # 4 batches per epoch
    distiller.train(torch.optim.SGD(distiller.model_S.parameters(), lr=0.1), loader, num_epochs=3)
    assert calls == {"teacher": 4, "student": 12}
    with torch.no_grad():
        for batch, logits_T in zip(batches_seen, logits_seen):
            torch.testing.assert_close(logits_T, distiller.model_T(**batch)["logits"])


# ----- precision ----------------------------------------------------------------------------------

def logit_dtypes(adaptor, seen):
    def recording(batch, model_outputs):
        seen.append(model_outputs["logits"].dtype)
        return adaptor(batch, model_outputs)
    return recording


@pytest.mark.parametrize("settings, dtype", [({"mixed_precision": "bf16"}, torch.bfloat16),
                                             ({"fp16": True}, torch.float32)])
def test_precision_on_the_cpu(tmp_path, settings, dtype):
    seen = []
    config = training_config(tmp_path, log_dir=str(tmp_path / "logs"), **settings)
    distiller = GeneralDistiller(config, DistillationConfig(hard_label_weight=0.5, intermediate_matches=MATCHES),
                                 classifier(32, seed=1, features=True), classifier(16, seed=2, features=True),
                                 BertForGLUESimpleAdaptor, logit_dtypes(BertForGLUESimpleAdaptor, seen))
    distiller.log_every_steps = 1
    distiller.train(torch.optim.SGD(distiller.model_S.parameters(), lr=0.1), dict_loader(24, 8), num_steps=3)
    assert seen == [dtype] * 3
    records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all(torch.isfinite(torch.tensor(value)) for record in records for value in record.values())
    assert all(p.dtype == torch.float32 for p in distiller.model_S.parameters())


# ----- KD details: probability shift, temperature schedule --------------------------------------------

def test_probability_shift_swaps_the_top_logit_with_the_gold_one():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0], [1.0, 4.0, 2.0]])
    shifted = probability_shift(logits, torch.tensor([1, 2, 0]))
    assert shifted.tolist() == [[1.0, 3.0, 0.0], [0.0, 2.0, 5.0], [4.0, 1.0, 2.0]]
    assert logits[0, 0] == 3.0  # the input is left as it was


def test_a_distiller_with_probability_shift_distills_the_shifted_logits(tmp_path):
    distiller = basic_distiller(tmp_path, probability_shift=True, temperature=2)
    logits_S = torch.tensor([[0.5, 0.0, -0.5], [1.0, 1.0, 0.0]])
    logits_T = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    _, losses = distiller.compute_loss({"logits": [logits_S], "labels": [torch.tensor([1, 2])]},
                                       {"logits": [logits_T]})
    shifted = torch.tensor([[1.0, 3.0, 0.0], [0.0, 2.0, 5.0]])
    assert losses["unweighted_kd_loss"].item() == pytest.approx(kd_ce_loss(logits_S, shifted, 2).item(), rel=1e-6)


def test_the_flsw_temperature_schedule_in_a_distiller(tmp_path):
    beta, gamma = 1.0, 2.0
    distiller = basic_distiller(tmp_path, temperature=4, temperature_scheduler=["flsw", beta, gamma])
    logits_S = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    logits_T = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    _, losses = distiller.compute_loss({"logits": [logits_S]}, {"logits": [logits_T]})
    cosines = torch.nn.functional.cosine_similarity(logits_S, logits_T, dim=-1)
    w = (1 - cosines) ** gamma
    tau = (4 + (w.mean() - w) * beta).unsqueeze(-1)
    expected = -(torch.softmax(logits_T / tau, -1) * torch.log_softmax(logits_S / tau, -1)).sum(-1).mean()
    assert losses["unweighted_kd_loss"].item() == pytest.approx(expected.item(), rel=1e-3)

    distiller.train(torch.optim.SGD(distiller.model_S.parameters(), lr=0.1), dict_loader(16, 8), num_steps=2)
    assert (tmp_path / "out" / "gs2.pkl").exists()


# ----- errors ----------------------------------------------------------------------------------------

def test_an_adaptor_with_an_unknown_key_is_named(tmp_path):
    def adaptor(batch, model_outputs):
        return {"logits": model_outputs["logits"], "hiddens": model_outputs["logits"]}

    trainer = BasicTrainer(training_config(tmp_path), classifier(16, seed=2), adaptor)
    with pytest.raises(ValueError, match="'hiddens'"):
        trainer.train(torch.optim.SGD(trainer.model_S.parameters(), lr=0.1), dict_loader(8, 8), num_epochs=1)


def test_an_attention_match_without_attention_maps_is_a_clear_error(tmp_path):
    match = {"layer_T": 1, "layer_S": 0, "feature": "attention", "loss": "attention_mse", "weight": 1}
    distiller = GeneralDistiller(training_config(tmp_path), DistillationConfig(intermediate_matches=[match]),
                                 classifier(32, seed=1, features=True), classifier(16, seed=2),
                                 BertForGLUESimpleAdaptor, BertForGLUESimpleAdaptor)
    with pytest.raises(ValueError) as error:
        distiller.train_on_batch(first_batch(), {})
    assert all(word in str(error.value) for word in ["intermediate_matches[0]", "'attention'", "student"])
