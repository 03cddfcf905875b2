import numpy as np
import pytest
import torch
from pyemd import emd, emd_with_flow

from distiller_emd import LayerwiseLinear, layer_distances, transport_plan


def test_transport_plan_on_a_hand_made_case():
    # Two student layers, three teacher layers; student layer 0 is close to teacher layer 0,
    # student layer 1 to teacher layer 2, both halfway to teacher layer 1.
    distances = np.array([[0.0, 1.0, 2.0],
                          [2.0, 1.0, 0.0]])
    plan = transport_plan(np.array([0.5, 0.5]), np.full(3, 1 / 3), distances)
    expected = np.array([[1 / 3, 1 / 6, 0.0],
                         [0.0, 1 / 6, 1 / 3]])
    np.testing.assert_allclose(plan, expected, atol=1e-9)
    assert plan.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(plan.sum(axis=1), [0.5, 0.5])
    np.testing.assert_allclose(plan.sum(axis=0), [1 / 3] * 3)
    assert (plan * distances).sum() == pytest.approx(1 / 3)


def test_transport_plan_agrees_with_pyemd_on_random_costs():
    rng = np.random.default_rng(0)
    distances = rng.random((4, 12))
    weights_S, weights_T = np.full(4, 0.25), np.full(12, 1 / 12)
    plan = transport_plan(weights_S, weights_T, distances)
    # The same problem stated for pyemd directly: bins 0-3 student, 4-15 teacher.
    first = np.concatenate([weights_S, np.zeros(12)])
    second = np.concatenate([np.zeros(4), weights_T])
    costs = np.zeros((16, 16))
    costs[:4, 4:], costs[4:, :4] = distances, distances.T
    assert (plan * distances).sum() == pytest.approx(emd(first, second, costs))
    assert plan.sum() == pytest.approx(1.0) and (plan >= 0).all()
    _, flow = emd_with_flow(first, second, costs)
    np.testing.assert_allclose(plan, np.asarray(flow)[:4, 4:])


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
