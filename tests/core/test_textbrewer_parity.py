"""distillation/ side by side with TextBrewer 0.2.1 on the same tiny BERTs and batches.

Every KD and match loss (with and without a mask, with projections), the losses dicts of
GeneralDistiller, BasicDistiller, MultiTeacherDistiller and BasicTrainer, a few training
steps, and the configs' defaults must agree within 1e-5 relative. Batches are also cut to
their longest example, as main.py does: with padded_length configured, every loss of the cut
batch equals TextBrewer's on the padded one.
"""

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

tb = pytest.importorskip(
    "textbrewer",
    reason="TextBrewer 0.2.1 is not installed (pip install --no-deps textbrewer==0.2.1.post1 tensorboardX)",
)
from textbrewer import presets as tb_presets  # noqa: E402

import distillation  # noqa: E402
from distillation import (  # noqa: E402
    BasicDistiller,
    BasicTrainer,
    DistillationConfig,
    GeneralDistiller,
    MultiTeacherDistiller,
    TrainingConfig,
)

if not tb.__version__.startswith("0.2.1"):
    pytest.skip(
        f"the parity test is written against TextBrewer 0.2.1, found {tb.__version__}",
        allow_module_level=True,
    )

VOCAB, LENGTH, HEADS = 30, 12, 2
LENGTHS = [12, 9, 6, 4, 7, 5]  # real tokens per example: one full, the others padded
REL = 1e-5


class Classifier(nn.Module):
    """BERT (eager attention, no dropout) + a linear head on [CLS]. Returns a tuple
    (logits, hidden states, attention maps, per-example loss or None), as TextBrewer-era
    models did."""

    def __init__(self, hidden, layers, seed):
        super().__init__()
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=HEADS,
            intermediate_size=2 * hidden,
            max_position_embeddings=LENGTH,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            attn_implementation="eager",
        )
        self.bert = BertModel(config, add_pooling_layer=False)
        self.head = nn.Linear(hidden, 3)

    def forward(self, input_ids, attention_mask, labels=None):
        # A tuple: (last layer, hidden states, attention maps, [cross-attentions])
        outputs = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            output_attentions=True,
            return_dict=False,
        )
        sequence, hidden, attention = outputs[:3]
        logits = self.head(sequence[:, 0])
        loss = F.cross_entropy(logits, labels, reduction="none") if labels is not None else None
        return logits, hidden, attention, loss


def masked_adaptor(batch, outputs):
    logits, hidden, attention, loss = outputs
    results = {
        "logits": logits,
        "hidden": hidden,
        "attention": attention,
        "inputs_mask": batch["attention_mask"],
        "labels": batch["labels"],
    }
    if loss is not None:
        results["losses"] = loss
    return results


def unmasked_adaptor(batch, outputs):
    results = masked_adaptor(batch, outputs)
    del results["inputs_mask"]
    return results


def make_batch(seed, lengths=LENGTHS):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(LENGTH)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(1, VOCAB, (len(lengths), LENGTH), generator=g) * mask
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.randint(0, 3, (len(lengths),), generator=g),
    }


def cut(batch):
    """main.py's FeatureDataset: every (batch, length) tensor cut to the longest example."""
    longest = int(batch["attention_mask"].sum(dim=1).max())
    return {key: value[:, :longest] if value.dim() == 2 else value for key, value in batch.items()}


@pytest.fixture(scope="module")
def models():
    return {
        "teacher": Classifier(32, 3, seed=1),
        "teacher2": Classifier(32, 3, seed=3),
        "student": Classifier(16, 2, seed=2),
    }


def close(ours, theirs, what=""):
    ours, theirs = (float(x.detach()) if torch.is_tensor(x) else float(x) for x in (ours, theirs))
    assert ours == pytest.approx(theirs, rel=REL, abs=1e-7), what


def assert_same_losses(ours, theirs):
    total, losses = ours
    tb_total, tb_losses = theirs
    assert sorted(losses) == sorted(tb_losses)
    for name in tb_losses:
        close(losses[name], tb_losses[name], name)
    close(total, tb_total, "total")


def configs(tmp_path, **distill):
    """(ours, TextBrewer's) training and distillation configs with the same settings."""
    out = str(tmp_path / "out")
    return (
        (TrainingConfig(device="cpu", output_dir=out + "_ours"), DistillationConfig(**distill)),
        (
            tb.TrainingConfig(device="cpu", output_dir=out + "_tb"),
            tb.DistillationConfig(**copy.deepcopy(distill)),
        ),
    )


# ----- the maps --------------------------------------------------------------------------------


# What this project adds to TextBrewer's names (relation_losses.py): new names only.
ADDED_MATCH_LOSSES = {"relation_kl", "att_score_mse"}
ADDED_FEATURES = {"relation", "attention_scores"}


def test_the_maps_have_textbrewers_names():
    assert set(distillation.KD_LOSS_MAP) == set(tb_presets.KD_LOSS_MAP)
    assert set(distillation.MATCH_LOSS_MAP) == set(tb_presets.MATCH_LOSS_MAP) | ADDED_MATCH_LOSSES
    assert not ADDED_MATCH_LOSSES & set(tb_presets.MATCH_LOSS_MAP)
    assert set(distillation.PROJ_MAP) == set(tb_presets.PROJ_MAP)
    assert set(distillation.WEIGHT_SCHEDULER) == set(tb_presets.WEIGHT_SCHEDULER)
    assert set(distillation.FEATURES) == set(tb_presets.FEATURES) | ADDED_FEATURES
    assert not ADDED_FEATURES & set(tb_presets.FEATURES)


# ----- every loss on the models' features ------------------------------------------------------


@pytest.fixture(scope="module")
def features(models):
    batch = make_batch(10)
    with torch.no_grad():
        out_S = models["student"](batch["input_ids"], batch["attention_mask"])
        out_T = models["teacher"](batch["input_ids"], batch["attention_mask"])
    return batch["attention_mask"], out_S, out_T


@pytest.mark.parametrize("name", sorted(tb_presets.KD_LOSS_MAP))
@pytest.mark.parametrize("temperature", [1, 4.0, "per-example"])
def test_kd_losses(features, name, temperature):
    _, out_S, out_T = features
    if temperature == "per-example":
        temperature = torch.linspace(0.5, 3.0, out_S[0].size(0))
    close(
        distillation.KD_LOSS_MAP[name](out_S[0], out_T[0], temperature),
        tb_presets.KD_LOSS_MAP[name](out_S[0], out_T[0], temperature),
    )


def match_inputs(name, out_S, out_T):
    """(student feature, teacher feature) for a match loss; gram/fsp compare equal hidden sizes,
    so the teacher side is narrowed to the student's size there."""
    hidden_S, hidden_T, attention_S, attention_T = out_S[1], out_T[1], out_S[2], out_T[2]
    if name.startswith("attention"):
        return attention_S[1], attention_T[2]
    if name in ("gram", "fsp"):
        return [hidden_S[0], hidden_S[2]], [hidden_T[0][..., :16], hidden_T[3][..., :16]]
    if name in ("mmd", "nst"):
        return [hidden_S[1], hidden_S[2]], [hidden_T[1], hidden_T[3]]
    return hidden_S[2], hidden_T[3][..., :16]


@pytest.mark.parametrize("name", sorted(tb_presets.MATCH_LOSS_MAP))
@pytest.mark.parametrize("masked", [True, False])
def test_match_losses(features, name, masked):
    mask, out_S, out_T = features
    S, T = match_inputs(name, out_S, out_T)
    mask = mask if masked else None
    close(
        distillation.MATCH_LOSS_MAP[name](S, T, mask=mask), tb_presets.MATCH_LOSS_MAP[name](S, T, mask=mask)
    )


# The losses whose masked value depends on the padded length: mmd/nst divide by it, and
# attention_ce's softmax runs over the padding columns.
@pytest.mark.parametrize("name", ["mmd", "nst", "attention_ce", "attention_ce_mean"])
def test_a_cut_batch_with_its_padded_length_is_textbrewers_padded_batch(models, name):
    batch = make_batch(11, lengths=[7, 5, 3, 6])  # longest 7 of 12: the cut removes 5 columns
    short = cut(batch)
    assert short["input_ids"].size(1) == 7
    with torch.no_grad():
        S_full, T_full = (
            models[m](batch["input_ids"], batch["attention_mask"]) for m in ("student", "teacher")
        )
        S_cut, T_cut = (
            models[m](short["input_ids"], short["attention_mask"]) for m in ("student", "teacher")
        )
    theirs = tb_presets.MATCH_LOSS_MAP[name](
        *match_inputs(name, S_full, T_full), mask=batch["attention_mask"]
    )
    ours = distillation.MATCH_LOSS_MAP[name](
        *match_inputs(name, S_cut, T_cut), mask=short["attention_mask"], padded_length=LENGTH
    )
    close(ours, theirs)
    # Without the configured length the cut batch gives another number: the test can tell.
    plain = distillation.MATCH_LOSS_MAP[name](*match_inputs(name, S_cut, T_cut), mask=short["attention_mask"])
    assert float(plain) != pytest.approx(float(theirs), rel=1e-3)


# ----- the distillers ----------------------------------------------------------------------------

# Every match loss, with each kind of projection and without one.
MATCHES = [
    {
        "layer_T": 2,
        "layer_S": 1,
        "feature": "hidden",
        "loss": "hidden_mse",
        "weight": 1,
        "proj": ["linear", 16, 32],
    },
    {
        "layer_T": 0,
        "layer_S": 0,
        "feature": "hidden",
        "loss": "hidden_mse",
        "weight": 0.5,
        "proj": ["relu", 16, 32],
    },
    {"layer_T": 3, "layer_S": 2, "feature": "hidden", "loss": "cos", "weight": 2, "proj": ["tanh", 16, 32]},
    {"layer_T": 3, "layer_S": 2, "feature": "hidden", "loss": "pkd", "weight": 1, "proj": ["linear", 16, 32]},
    {"layer_T": 1, "layer_S": 0, "feature": "attention", "loss": "attention_mse", "weight": 1},
    {"layer_T": 2, "layer_S": 1, "feature": "attention", "loss": "attention_mse_sum", "weight": 1},
    {"layer_T": 0, "layer_S": 0, "feature": "attention", "loss": "attention_ce", "weight": 1},
    {"layer_T": 2, "layer_S": 1, "feature": "attention", "loss": "attention_ce_mean", "weight": 1},
    {
        "layer_T": [0, 2],
        "layer_S": [0, 1],
        "feature": "hidden",
        "loss": "gram",
        "weight": 1,
        "proj": ["linear", 16, 32],
    },
    {
        "layer_T": [1, 3],
        "layer_S": [1, 2],
        "feature": "hidden",
        "loss": "fsp",
        "weight": 1,
        "proj": ["linear", 16, 32],
    },
    {"layer_T": [0, 2], "layer_S": [0, 1], "feature": "hidden", "loss": "mmd", "weight": 1},
    {"layer_T": [3, 3], "layer_S": [2, 2], "feature": "hidden", "loss": "nst", "weight": 3},
]


def test_every_match_loss_is_in_the_distiller_matches():
    assert {match["loss"] for match in MATCHES} == set(tb_presets.MATCH_LOSS_MAP)


def general_pair(tmp_path, models, settings, padded_length=None):
    """(ours, TextBrewer's) GeneralDistiller on copies of the same models, same projections."""
    (t_ours, d_ours), (t_tb, d_tb) = configs(tmp_path, intermediate_matches=MATCHES, **settings)
    d_ours.padded_length = padded_length
    adaptor = masked_adaptor
    ours = GeneralDistiller(
        t_ours, d_ours, copy.deepcopy(models["teacher"]), copy.deepcopy(models["student"]), adaptor, adaptor
    )
    theirs = tb.GeneralDistiller(
        t_tb, d_tb, copy.deepcopy(models["teacher"]), copy.deepcopy(models["student"]), adaptor, adaptor
    )
    for proj_ours, proj_tb in zip(ours.projs, theirs.projs):
        assert (proj_ours is None) == (proj_tb is None)
        if proj_ours is not None:
            proj_tb.load_state_dict(proj_ours.state_dict())
    return ours, theirs


GENERAL_SETTINGS = [
    {"temperature": 8},
    {"temperature": 2, "hard_label_weight": 0.7, "kd_loss_weight": 1.5, "kd_loss_type": "mse"},
    {"temperature": 4, "probability_shift": True, "hard_label_weight": 1},
]


@pytest.mark.parametrize("settings", GENERAL_SETTINGS)
@pytest.mark.parametrize("adaptor", [masked_adaptor, unmasked_adaptor], ids=["masked", "unmasked"])
def test_general_distiller_losses(tmp_path, models, settings, adaptor):
    ours, theirs = general_pair(tmp_path, models, dict(settings))
    ours.adaptor_S = ours.adaptor_T = theirs.adaptor_S = theirs.adaptor_T = adaptor
    for seed in (20, 21):
        batch = make_batch(seed)
        assert_same_losses(ours.train_on_batch(batch, {}), theirs.train_on_batch(batch, {}))


def test_general_distiller_on_cut_batches_with_the_padded_length(tmp_path, models):
    """main.py's setting: batches cut to their longest example, padded_length = max_seq_length."""
    ours, theirs = general_pair(tmp_path, models, {"temperature": 8}, padded_length=LENGTH)
    batch = make_batch(22, lengths=[8, 5, 6, 3])
    assert cut(batch)["input_ids"].size(1) < LENGTH
    assert_same_losses(ours.train_on_batch(cut(batch), {}), theirs.train_on_batch(batch, {}))


def test_general_distiller_trains_as_textbrewer(tmp_path, models):
    """Two epochs of two batches through each library's own train(); the students and
    projections end with the same weights."""
    ours, theirs = general_pair(tmp_path, models, {"temperature": 4, "hard_label_weight": 0.5})
    batches = [make_batch(30), make_batch(31)]
    for distiller in (ours, theirs):
        optimizer = torch.optim.SGD(distiller.model_S.parameters(), lr=0.05)
        distiller.train(optimizer, batches, num_epochs=2)
    for (name, p_ours), p_tb in zip(ours.model_S.named_parameters(), theirs.model_S.parameters()):
        torch.testing.assert_close(p_ours, p_tb, rtol=REL, atol=1e-6, msg=name)
    for proj_ours, proj_tb in zip(ours.projs, theirs.projs):
        if proj_ours is not None:
            for p_ours, p_tb in zip(proj_ours.parameters(), proj_tb.parameters()):
                torch.testing.assert_close(p_ours, p_tb, rtol=REL, atol=1e-6)


@pytest.mark.parametrize(
    "settings",
    GENERAL_SETTINGS
    + [
        {"temperature": 3, "temperature_scheduler": ["flsw", 1, 2]},
        {"temperature": 3, "temperature_scheduler": ["cwsm", 1]},
        {"temperature": 3, "temperature_scheduler": "constant"},
    ],
)
def test_basic_distiller_losses(tmp_path, models, settings):
    (t_ours, d_ours), (t_tb, d_tb) = configs(tmp_path, **settings)
    ours = BasicDistiller(
        t_ours, d_ours, models["teacher"], models["student"], masked_adaptor, masked_adaptor
    )
    theirs = tb.BasicDistiller(
        t_tb, d_tb, models["teacher"], models["student"], masked_adaptor, masked_adaptor
    )
    for seed in (40, 41):
        batch = make_batch(seed)
        assert_same_losses(ours.train_on_batch(batch, {}), theirs.train_on_batch(batch, {}))


@pytest.mark.parametrize("settings", GENERAL_SETTINGS)
def test_multi_teacher_distiller_losses(tmp_path, models, settings):
    (t_ours, d_ours), (t_tb, d_tb) = configs(tmp_path, **settings)
    teachers = [models["teacher"], models["teacher2"]]
    ours = MultiTeacherDistiller(t_ours, d_ours, teachers, models["student"], masked_adaptor, masked_adaptor)
    theirs = tb.MultiTeacherDistiller(t_tb, d_tb, teachers, models["student"], masked_adaptor, masked_adaptor)
    for seed in (50, 51):
        batch = make_batch(seed)
        assert_same_losses(ours.train_on_batch(batch, {}), theirs.train_on_batch(batch, {}))


def test_basic_trainer_loss(tmp_path, models):
    (t_ours, _), (t_tb, _) = configs(tmp_path)
    ours = BasicTrainer(t_ours, models["student"], masked_adaptor)
    theirs = tb.BasicTrainer(t_tb, models["student"], masked_adaptor)
    for seed in (60, 61):
        batch = make_batch(seed)
        total, losses = ours.train_on_batch(batch, {})
        # TextBrewer's BasicTrainer returns the loss alone; ours also names it.
        tb_total = theirs.train_on_batch(batch, {})
        assert list(losses) == ["unweighted_hard_label_loss"]
        close(total, tb_total)
        close(losses["unweighted_hard_label_loss"], tb_total)


# ----- config defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ours, theirs", [(TrainingConfig, tb.TrainingConfig), (DistillationConfig, tb.DistillationConfig)]
)
def test_every_config_default_is_textbrewers(ours, theirs):
    ours_params = inspect.signature(ours.__init__).parameters
    for name, param in inspect.signature(theirs.__init__).parameters.items():
        if name != "self":
            assert name in ours_params, name
            assert ours_params[name].default == param.default, name


def test_default_configs_hold_textbrewers_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # TextBrewer's TrainingConfig creates ./saved_models
    for ours, theirs in [
        (TrainingConfig(), tb.TrainingConfig()),
        (DistillationConfig(), tb.DistillationConfig()),
    ]:
        for name, value in vars(theirs).items():
            mine = getattr(ours, name)
            if name == "device":  # ours is a torch.device, on the CPU when CUDA is missing
                assert str(value) == "cuda" and mine.type in ("cuda", "cpu")
            elif name == "temperature_scheduler":  # both resolve 'none' to None, as TextBrewer does
                assert value is None and mine is None, name
            elif name.endswith("_scheduler"):  # TextBrewer resolves 'none' to None; ours keeps it
                assert value is None and mine == "none", name
            else:
                assert mine == value, name
