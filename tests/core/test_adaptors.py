"""README, the `distillation` core, "Adaptors": which loss terms a distiller leaves out when an
adaptor does not return their inputs, and which missing inputs and unknown keys are errors."""

import pytest
import torch
import torch.nn.functional as F

from distillation import BasicDistiller, BasicTrainer, DistillationConfig, GeneralDistiller, TrainingConfig
from tests.core.tiny_models import TinyClassifier, dict_loader, make_data, train_config


def distiller(cls=BasicDistiller, **settings):
    config = DistillationConfig(temperature=2, hard_label_weight=0.5, kd_loss_weight=1, **settings)
    return cls(TrainingConfig(device="cpu"), config, torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), None, None)


LOGITS_S = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
LOGITS_T = torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
KD = -(F.softmax(LOGITS_T / 2, -1) * F.log_softmax(LOGITS_S / 2, -1)).sum(-1).mean().item()
HARD = torch.tensor([0.25, 0.75])


def test_all_inputs_give_both_terms():
    total, losses = distiller().compute_loss({"logits": [LOGITS_S], "losses": [HARD]}, {"logits": [LOGITS_T]})
    assert set(losses) == {"unweighted_kd_loss", "unweighted_hard_label_loss"}
    assert total.item() == pytest.approx(KD + 0.5 * 0.5)


def test_without_logits_the_kd_term_is_left_out():
    for results_S, results_T in (
        ({"losses": [HARD]}, {"logits": [LOGITS_T]}),
        ({"logits": [LOGITS_S], "losses": [HARD]}, {}),
    ):
        total, losses = distiller().compute_loss(results_S, results_T)
        assert set(losses) == {"unweighted_hard_label_loss"}
        assert total.item() == pytest.approx(0.5 * 0.5)


def test_without_losses_the_hard_label_term_is_left_out():
    total, losses = distiller().compute_loss({"logits": [LOGITS_S]}, {"logits": [LOGITS_T]})
    assert set(losses) == {"unweighted_kd_loss"}
    assert total.item() == pytest.approx(KD)


@pytest.mark.parametrize("side", ["student", "teacher"])
def test_an_intermediate_match_whose_feature_is_missing_raises(side):
    general = distiller(
        GeneralDistiller,
        intermediate_matches=[
            {"layer_T": 1, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
        ],
    )
    hidden = [torch.zeros(2, 3, 4), torch.ones(2, 3, 4)]
    results_S = {"logits": [LOGITS_S], "hidden": hidden}
    results_T = {"logits": [LOGITS_T], "hidden": hidden}
    del (results_S if side == "student" else results_T)["hidden"]
    with pytest.raises(
        ValueError, match=rf"intermediate_matches\[0\] needs 'hidden' from the {side}'s adaptor"
    ):
        general.compute_loss(results_S, results_T)


def test_an_unknown_adaptor_key_is_an_error(tmp_path):
    """Through training: the misspelt key is named and the known keys are listed."""

    def misspelt(batch, outputs):
        return {"logits": outputs["logits"], "losses": outputs["loss"], "hiddens": outputs["hidden"]}

    student = TinyClassifier(16, seed=2)
    trainer = BasicTrainer(train_config(tmp_path), student, misspelt)
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'hiddens'") as error:
        trainer.train(
            torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(make_data(16), 16), num_steps=1
        )
    assert "inputs_mask" in str(error.value)
