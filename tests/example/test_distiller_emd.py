import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from distiller_emd import LayerwiseLinear, layer_distances, transport_plan
from tests.helpers import load_main_emd


def test_transport_plan_on_a_hand_made_case():
    # Two student layers, three teacher layers; student layer 0 is close to teacher layer 0,
    # student layer 1 to teacher layer 2, both halfway to teacher layer 1.
    distances = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    plan = transport_plan(np.array([0.5, 0.5]), np.full(3, 1 / 3), distances)
    expected = np.array([[1 / 3, 1 / 6, 0.0], [0.0, 1 / 6, 1 / 3]])
    np.testing.assert_allclose(plan, expected, atol=1e-9)
    assert plan.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(plan.sum(axis=1), [0.5, 0.5])
    np.testing.assert_allclose(plan.sum(axis=0), [1 / 3] * 3)
    assert (plan * distances).sum() == pytest.approx(1 / 3)


def linprog_plan(weights_S, weights_T, distances):
    """The optimal transport plan stated as a linear program and solved by scipy's HiGHS:
    minimise sum(F * D) subject to F >= 0, row sums = weights_S, column sums = weights_T."""
    num_S, num_T = distances.shape
    rows = np.zeros((num_S, num_S * num_T))
    columns = np.zeros((num_T, num_S * num_T))
    for i in range(num_S):
        for j in range(num_T):
            rows[i, i * num_T + j] = 1
            columns[j, i * num_T + j] = 1
    solution = linprog(
        distances.ravel(),
        A_eq=np.vstack([rows, columns]),
        b_eq=np.concatenate([weights_S, weights_T]),
        bounds=(0, None),
        method="highs",
    )
    assert solution.status == 0
    return solution.x.reshape(num_S, num_T), solution.fun


@pytest.mark.parametrize("num_S, num_T, seed", [(4, 12, 0), (3, 5, 1), (2, 2, 2), (6, 4, 3)])
def test_transport_plan_is_optimal_against_a_linear_program(num_S, num_T, seed):
    rng = np.random.default_rng(seed)
    distances = rng.random((num_S, num_T))
    weights_S, weights_T = np.full(num_S, 1 / num_S), np.full(num_T, 1 / num_T)
    plan = transport_plan(weights_S, weights_T, distances)
    assert plan.shape == (num_S, num_T)
    # A feasible plan: non-negative, the student's weights leave each row, the teacher's arrive.
    assert (plan >= -1e-12).all()
    np.testing.assert_allclose(plan.sum(axis=1), weights_S, atol=1e-9)
    np.testing.assert_allclose(plan.sum(axis=0), weights_T, atol=1e-9)
    # ... and an optimal one: its cost is the linear program's optimum.
    _, optimum = linprog_plan(weights_S, weights_T, distances)
    assert (plan * distances).sum() == pytest.approx(optimum, rel=1e-9, abs=1e-12)
    # Not a feasible but poor plan: the uniform plan costs more on these random costs.
    assert (np.outer(weights_S, weights_T) * distances).sum() > optimum + 1e-3


def test_layer_distances_equal_masked_mse_of_every_pair():
    torch.manual_seed(0)
    states_S, states_T = torch.randn(3, 2, 5, 8), torch.randn(4, 2, 5, 8)
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    distances = layer_distances(states_S, states_T, mask)
    for i in range(3):
        for j in range(4):
            squared = ((states_S[i] - states_T[j]) ** 2).sum(-1)  # (batch, length)
            expected = (squared * mask).sum() / (mask.sum() * 8)
            assert distances[i, j].item() == pytest.approx(expected.item(), rel=1e-5)
    # Padding positions do not count.
    states_S[:, 1, 3:] += 100.0
    torch.testing.assert_close(layer_distances(states_S, states_T, mask), distances)


def test_layerwise_linear_applies_one_map_per_layer():
    torch.manual_seed(0)
    projection = LayerwiseLinear(3, 8, 16)
    torch.nn.init.normal_(projection.bias)
    states = torch.randn(3, 2, 5, 8)
    out = projection(states)
    assert out.shape == (3, 2, 5, 16)
    for layer in range(3):
        expected = states[layer] @ projection.weight[layer] + projection.bias[layer]
        torch.testing.assert_close(out[layer], expected)


# ---------------------------------------------------------------------------------------------
# EMDDistiller.compute_loss against the formulation of the paper, computed independently:
# a loop over layer pairs with the masked hidden-state MSE, the EMD solved as a linear program,
# a projection per student layer and the embedding term one to one.


def tiny_bert(layers, hidden):
    from transformers import BertConfig

    from modeling import BertForGLUESimple

    config = BertConfig(
        vocab_size=30,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=16,
    )
    return BertForGLUESimple(config, 3, output_hidden_states=True)


def make_distiller(emd_weight, kd_loss_weight=1.0, hard_label_weight=0.0, temperature=4.0):
    from distillation import DistillationConfig, TrainingConfig
    from distiller_emd import EMDDistiller
    from modeling import BertForGLUESimpleAdaptor

    torch.manual_seed(0)
    distiller = EMDDistiller(
        TrainingConfig(device="cpu", output_dir="unused"),
        DistillationConfig(
            temperature=temperature, kd_loss_weight=kd_loss_weight, hard_label_weight=hard_label_weight
        ),
        tiny_bert(5, 12),
        tiny_bert(3, 8),
        BertForGLUESimpleAdaptor,
        BertForGLUESimpleAdaptor,
        emd_weight=emd_weight,
    )
    torch.nn.init.normal_(distiller.projection.weight, std=0.3)  # not the small initial values
    torch.nn.init.normal_(distiller.projection.bias, std=0.3)
    return distiller


def random_results(seed, layers_S=3, layers_T=5, hidden_S=8, hidden_T=12, batch=3, length=6):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 4:] = 0
    mask[2, 2:] = 0
    results_S = {
        "logits": [torch.randn(batch, 3, generator=g)],
        "losses": [torch.rand(batch, generator=g)],
        "hidden": [torch.randn(batch, length, hidden_S, generator=g) for _ in range(layers_S + 1)],
        "inputs_mask": mask,
    }
    results_T = {
        "logits": [torch.randn(batch, 3, generator=g)],
        "hidden": [torch.randn(batch, length, hidden_T, generator=g) for _ in range(layers_T + 1)],
        "inputs_mask": mask,
    }
    return results_S, results_T


def reference_loss(
    distiller, results_S, results_T, emd_weight, kd_loss_weight, hard_label_weight, temperature
):
    """The loss written out term by term, one layer pair at a time, in float64."""
    weight = distiller.projection.weight.detach().double()
    bias = distiller.projection.bias.detach().double()
    mask = results_S["inputs_mask"].double()

    def project(layer, state):  # P_layer: (batch, length, H_S) -> (batch, length, H_T)
        return state.double() @ weight[layer] + bias[layer, 0]

    def masked_mse(a, b):
        squared = ((a - b.double()) ** 2).sum(dim=-1)  # (batch, length)
        return float((squared * mask).sum() / (mask.sum() * a.shape[-1]))

    logits_S, logits_T = results_S["logits"][0].double(), results_T["logits"][0].double()
    p_T = torch.softmax(logits_T / temperature, dim=-1)
    kd = float(-(p_T * torch.log_softmax(logits_S / temperature, dim=-1)).sum(-1).mean())
    hard = float(results_S["losses"][0].double().mean())

    hidden_S, hidden_T = results_S["hidden"], results_T["hidden"]
    num_S, num_T = len(hidden_S) - 1, len(hidden_T) - 1
    distances = np.array(
        [
            [masked_mse(project(i, hidden_S[i]), hidden_T[j]) for j in range(1, num_T + 1)]
            for i in range(1, num_S + 1)
        ]
    )
    plan, emd = linprog_plan(np.full(num_S, 1 / num_S), np.full(num_T, 1 / num_T), distances)
    embedding = masked_mse(project(0, hidden_S[0]), hidden_T[0])
    total = kd_loss_weight * kd + hard_label_weight * hard + emd_weight * (emd + embedding)
    return {
        "total": total,
        "kd": kd,
        "hard": hard,
        "emd": emd,
        "embedding": embedding,
        "plan": plan,
        "distances": distances,
    }


@pytest.mark.parametrize(
    "emd_weight, kd_loss_weight, hard_label_weight, temperature, seed",
    [
        (1.0, 1.0, 0.0, 8.0, 0),
        (0.3, 0.5, 2.0, 2.0, 1),
        (4.0, 0.0, 1.0, 1.0, 2),
    ],
)
def test_compute_loss_equals_the_layer_by_layer_reference(
    emd_weight, kd_loss_weight, hard_label_weight, temperature, seed
):
    distiller = make_distiller(emd_weight, kd_loss_weight, hard_label_weight, temperature)
    results_S, results_T = random_results(seed)
    total, losses = distiller.compute_loss(results_S, results_T)
    expected = reference_loss(
        distiller, results_S, results_T, emd_weight, kd_loss_weight, hard_label_weight, temperature
    )
    assert losses["unweighted_kd_loss"].item() == pytest.approx(expected["kd"], rel=1e-5)
    assert losses["unweighted_hard_label_loss"].item() == pytest.approx(expected["hard"], rel=1e-5)
    assert losses["unweighted_hidden_hidden_mse_emd"].item() == pytest.approx(expected["emd"], rel=1e-4)
    assert losses["unweighted_embedding_hidden_mse"].item() == pytest.approx(expected["embedding"], rel=1e-5)
    assert total.item() == pytest.approx(expected["total"], rel=1e-4)
    # The EMD term is not just any feasible plan's cost: it is below the uniform plan's.
    uniform = expected["distances"].mean()
    assert expected["emd"] < uniform - 1e-3


def test_gradient_flows_through_the_plan_as_a_constant():
    """d total / d projection = the gradient of sum(F * D) + embedding with F held fixed at the
    optimal plan (unique for random distances), computed by autograd on the reference loop."""
    distiller = make_distiller(emd_weight=1.0, kd_loss_weight=0.0)
    results_S, results_T = random_results(5)
    total, _ = distiller.compute_loss(results_S, results_T)
    total.backward()
    expected = reference_loss(distiller, results_S, results_T, 1.0, 0.0, 0.0, 1.0)
    plan = torch.as_tensor(expected["plan"])
    weight = distiller.projection.weight.detach().double().requires_grad_(True)
    bias = distiller.projection.bias.detach().double().requires_grad_(True)
    mask = results_S["inputs_mask"].double()

    def masked_mse(layer, state_S, state_T):
        projected = state_S.double() @ weight[layer] + bias[layer, 0]
        squared = ((projected - state_T.double()) ** 2).sum(dim=-1)
        return (squared * mask).sum() / (mask.sum() * projected.shape[-1])

    hidden_S, hidden_T = results_S["hidden"], results_T["hidden"]
    reference = masked_mse(0, hidden_S[0], hidden_T[0])
    for i in range(1, len(hidden_S)):
        for j in range(1, len(hidden_T)):
            reference = reference + plan[i - 1, j - 1] * masked_mse(i, hidden_S[i], hidden_T[j])
    reference.backward()
    torch.testing.assert_close(distiller.projection.weight.grad.double(), weight.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(distiller.projection.bias.grad.double(), bias.grad, rtol=1e-4, atol=1e-7)


def test_emd_weight_scales_the_emd_and_embedding_terms_only():
    results_S, results_T = random_results(3)
    totals, parts = {}, {}
    for weight in (0.0, 1.0, 2.5):
        total, losses = make_distiller(weight, hard_label_weight=0.5).compute_loss(results_S, results_T)
        totals[weight], parts[weight] = total.item(), losses
    prediction = (
        parts[0.0]["unweighted_kd_loss"].item() + 0.5 * parts[0.0]["unweighted_hard_label_loss"].item()
    )
    assert totals[0.0] == pytest.approx(prediction, rel=1e-6)
    emd_terms = (
        parts[1.0]["unweighted_hidden_hidden_mse_emd"].item()
        + parts[1.0]["unweighted_embedding_hidden_mse"].item()
    )
    assert emd_terms > 0.1
    assert totals[1.0] == pytest.approx(prediction + emd_terms, rel=1e-5)
    assert totals[2.5] == pytest.approx(prediction + 2.5 * emd_terms, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# main.emd.py's builder


def emd_args(**overrides):
    """main.emd.py's options as its command line parses them, with a few set here."""
    from pipeline.options import parse_args

    module = load_main_emd()
    args = parse_args(
        [
            "--data_dir",
            "data",
            "--output_dir",
            "out",
            "--model_config_json",
            "models.json",
            "--intermediate_weight",
            "0.25",
            "--temperature",
            "3",
            "--hard_label_weight",
            "0.5",
            "--kd_loss_weight",
            "0.75",
            "--do_train",
        ],
        module.add_emd_options,
        module.check_emd_options,
    )
    vars(args).update(overrides)
    return args


def test_build_emd_distiller_passes_the_options_through():
    from distillation import TrainingConfig
    from distiller_emd import EMDDistiller

    distiller = load_main_emd().build_emd_distiller(
        emd_args(), TrainingConfig(device="cpu"), [tiny_bert(4, 12)], tiny_bert(2, 8), []
    )
    assert type(distiller) is EMDDistiller
    assert distiller.emd_weight == 0.25  # --intermediate_weight
    config = distiller.d_config
    assert (config.temperature, config.hard_label_weight, config.kd_loss_weight) == (3.0, 0.5, 0.75)
    assert distiller.projection.weight.shape == (3, 8, 12)  # embeddings + 2 layers, 8 -> 12
    np.testing.assert_allclose(distiller.layer_weights_S, [0.5, 0.5])
    np.testing.assert_allclose(distiller.layer_weights_T, [0.25] * 4)


@pytest.mark.parametrize(
    "teachers, matches, message",
    [
        (2, [], "main.emd.py distills exactly one teacher; models.json enables 2"),
        (0, [], "main.emd.py distills exactly one teacher; models.json enables 0"),
        (1, [{"layer_S": 1, "layer_T": 2}], "main.emd.py finds its own layer mapping: drop --matches"),
    ],
)
def test_build_emd_distiller_refuses(teachers, matches, message):
    from distillation import TrainingConfig

    with pytest.raises(ValueError) as error:
        load_main_emd().build_emd_distiller(
            emd_args(),
            TrainingConfig(device="cpu"),
            [tiny_bert(2, 8) for _ in range(teachers)],
            tiny_bert(2, 8),
            matches,
        )
    assert str(error.value) == message
