"""TrainingConfig(teacher_dtype=...): the teachers cast once to a half type and run under
torch.inference_mode; what they hand the losses stays within that type's rounding of float32,
and it can be saved for the backward pass."""

import copy

import pytest
import torch

from distillation import DistillationConfig, GeneralDistiller
from tests.core.tiny_models import TinyClassifier, adaptor, dict_loader, make_data, train_config

# hidden_mse saves the teacher's hidden state for its backward pass: an inference tensor would
# be refused there.
MATCHES = [
    {
        "layer_T": 2,
        "layer_S": 1,
        "feature": "hidden",
        "loss": "hidden_mse",
        "weight": 1,
        "proj": ["linear", 16, 32],
    }
]
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


class RecordingDistiller(GeneralDistiller):
    """Keeps the teacher's results of the first batch, as compute_loss receives them."""

    def compute_loss(self, results_S, results_T):
        if not hasattr(self, "results_T"):
            self.results_T = results_T
        return super().compute_loss(results_S, results_T)


def first_teacher_results(tmp_path, teacher, teacher_dtype, steps=1):
    student = TinyClassifier(16, seed=2)
    distiller = RecordingDistiller(
        train_config(tmp_path / str(teacher_dtype), teacher_dtype=teacher_dtype),
        DistillationConfig(intermediate_matches=MATCHES),
        teacher,
        student,
        adaptor,
        adaptor,
    )
    before = copy.deepcopy(student.state_dict())
    distiller.train(
        torch.optim.SGD(student.parameters(), lr=0.1), dict_loader(make_data(), 16), num_steps=steps
    )
    assert any(not torch.equal(before[key], value) for key, value in student.state_dict().items())
    return distiller.results_T


@pytest.mark.parametrize("teacher_dtype", sorted(HALF))
def test_a_half_teacher_hands_the_losses_its_outputs_within_its_rounding(tmp_path, teacher_dtype):
    teacher = TinyClassifier(32, seed=1)
    full = first_teacher_results(tmp_path, copy.deepcopy(teacher), None)
    half = first_teacher_results(tmp_path, teacher, teacher_dtype)
    assert {param.dtype for param in teacher.parameters()} == {HALF[teacher_dtype]}  # cast once
    # Each layer rounds its inputs and weights once to the half type, and the teacher has two:
    # every output is within 4 roundings (4 eps times its largest value) of float32's.
    eps = torch.finfo(HALF[teacher_dtype]).eps
    for key in ("logits", "hidden", "attention"):
        for layer, (exact, rounded) in enumerate(zip(full[key], half[key], strict=True)):
            assert exact.dtype == torch.float32 and rounded.dtype == HALF[teacher_dtype], (key, layer)
            assert not rounded.is_inference(), (key, layer)
            difference = (rounded.float() - exact).abs().max()
            assert 0 < difference <= 4 * eps * exact.abs().max(), (key, layer)


def test_a_float32_teacher_under_inference_mode_still_feeds_a_loss_that_saves_it(tmp_path):
    """teacher_dtype='fp32': no cast, so hidden_mse receives the very tensors the teacher made
    under torch.inference_mode, unless they are cloned out of it."""
    teacher = TinyClassifier(32, seed=1)
    exact = first_teacher_results(tmp_path, copy.deepcopy(teacher), None, steps=2)
    made = []
    teacher.register_forward_hook(
        lambda module, inputs, outputs: made.append(outputs["logits"].is_inference())
    )
    results = first_teacher_results(tmp_path, teacher, "fp32", steps=2)
    assert made == [True, True]
    for key in ("logits", "hidden", "attention"):
        for layer, (expected, got) in enumerate(zip(exact[key], results[key], strict=True)):
            assert torch.equal(got, expected) and not got.is_inference(), (key, layer)
