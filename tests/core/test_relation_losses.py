"""relation_kl (MiniLMv2) and att_score_mse (TinyBERT) against their papers' and code's formulas,
written out here independently: loops over examples, heads and rows in float64, each example
cut to its own real length. Student and teacher differ in hidden size and in head size; the
fixtures' shapes are all different, so a swapped axis shows. Relative difference <= 1e-6."""

import math

import pytest
import torch

from distillation import MATCH_LOSS_MAP, IntermediateMatch, register_new
from distillation.relation_losses import att_score_mse_loss, relation_kl_loss

BATCH, LENGTH, HIDDEN_S, HIDDEN_T = 3, 6, 12, 18
LENGTHS = [6, 4, 1]  # real tokens of each example: one full, one padded, one with [CLS] only


def randn(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def mask_of(lengths, length=LENGTH):
    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()


def relations(seed):
    """(3, batch, length, hidden) student and teacher query/key/value vectors."""
    return randn(3, BATCH, LENGTH, HIDDEN_S, seed=seed, scale=2.0), randn(
        3, BATCH, LENGTH, HIDDEN_T, seed=seed + 1, scale=2.0
    )


def close(actual, expected):
    assert actual.dtype == torch.float32
    assert abs(actual.item() - expected) <= 1e-6 * abs(expected), (actual.item(), expected)


# ----- MiniLMv2, written out ---------------------------------------------------------------------


def minilm_relation(vectors, head, heads, n):
    """R[i][j] = softmax_j(x_i . x_j / sqrt(d)) of one head over the first n tokens (MiniLMv2,
    eq. 5: the vectors of one relation head, d = hidden / A_r), as lists of floats."""
    size = len(vectors[0]) // heads
    rows = [[float(v) for v in vectors[i][head * size : (head + 1) * size]] for i in range(n)]
    relation = []
    for i in range(n):
        scores = [sum(a * b for a, b in zip(rows[i], rows[j])) / math.sqrt(size) for j in range(n)]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        relation.append([e / sum(exps) for e in exps])
    return relation


def minilm_loss(relation_S, relation_T, lengths, heads, weights=(1, 1, 1)):
    """MiniLMv2 eq. 6-7: for each relation kind, (1 / (A_r |x|)) sum_a sum_i KL(R_T[a, i] ||
    R_S[a, i]) on each example's own length |x|, averaged over the examples; the kinds weighted."""
    total = 0.0
    for kind, weight in enumerate(weights):
        per_example = []
        for b, n in enumerate(lengths):
            kl = 0.0
            for head in range(heads):
                R_S = minilm_relation(relation_S[kind][b].double(), head, heads, n)
                R_T = minilm_relation(relation_T[kind][b].double(), head, heads, n)
                for row_S, row_T in zip(R_S, R_T):
                    kl += sum(t * (math.log(t) - math.log(s)) for s, t in zip(row_S, row_T))
            per_example.append(kl / (heads * n))
        total += weight * sum(per_example) / len(per_example)
    return total


@pytest.mark.parametrize("heads", [1, 3, 6])  # head sizes 12/18, 4/6, 2/3
def test_relation_kl_is_minilmv2s_formula_on_each_examples_real_length(heads):
    S, T = relations(1)
    close(relation_kl_loss(S, T, mask_of(LENGTHS), relation_heads=heads), minilm_loss(S, T, LENGTHS, heads))


def test_relation_kl_without_a_mask_is_the_formula_on_the_whole_length():
    S, T = relations(3)
    close(relation_kl_loss(S, T, relation_heads=3), minilm_loss(S, T, [LENGTH] * BATCH, 3))


def test_relation_weights_weigh_query_key_and_value_in_that_order():
    S, T = relations(5)
    weights = [0.5, 0.0, 2.0]
    expected = minilm_loss(S, T, LENGTHS, 2, weights)
    close(relation_kl_loss(S, T, mask_of(LENGTHS), relation_heads=2, relation_weights=weights), expected)
    # each kind alone differs from the others: a swapped kind would show
    alone = [minilm_loss(S, T, LENGTHS, 2, w) for w in ([1, 0, 0], [0, 1, 0], [0, 0, 1])]
    assert len({round(value, 6) for value in alone}) == 3


def test_padding_does_not_change_relation_kl():
    S, T = relations(7)
    mask = mask_of(LENGTHS)
    padded = (mask == 0)[None, :, :, None]
    expected = relation_kl_loss(S, T, mask, relation_heads=3)
    other_S = torch.where(padded, randn(*S.shape, seed=8, scale=50.0), S)
    other_T = torch.where(padded, randn(*T.shape, seed=9, scale=50.0), T)
    assert torch.equal(relation_kl_loss(other_S, other_T, mask, relation_heads=3), expected)


def test_relation_kl_is_zero_for_the_same_relations_at_another_width():
    """Relations are length x length: a teacher whose head vectors are the student's rotated and
    widened by zeros has the student's relations, whatever the widths."""
    S = randn(3, BATCH, LENGTH, HIDDEN_S, seed=11)
    heads, size_S, size_T = 3, HIDDEN_S // 3, HIDDEN_T // 3
    rotation, _ = torch.linalg.qr(randn(size_S, size_S, seed=12))
    scale = (size_T / size_S) ** 0.25  # so that dot products over sqrt(d) stay the same
    parts = []
    for head in range(heads):
        rotated = S[..., head * size_S : (head + 1) * size_S] @ rotation * scale
        parts += [rotated, torch.zeros(*rotated.shape[:-1], size_T - size_S)]
    T = torch.cat(parts, dim=-1)
    assert relation_kl_loss(S, T, mask_of(LENGTHS), relation_heads=heads).abs() < 1e-5
    assert relation_kl_loss(S, T.flip(2), mask_of(LENGTHS), relation_heads=heads) > 0.01


def test_relation_kl_refuses_heads_that_do_not_divide_a_width_and_other_features():
    S, T = relations(13)
    with pytest.raises(ValueError, match="hidden size 18 is not divisible by relation_heads 4"):
        relation_kl_loss(S, T, relation_heads=4)
    with pytest.raises(ValueError, match=r"expected the 'relation' feature, \(3, batch, length, hidden\)"):
        relation_kl_loss(S[0], T[0])
    with pytest.raises(ValueError, match="relation_weights must hold 3 numbers"):
        relation_kl_loss(S, T, relation_heads=3, relation_weights=[1, 1])


# ----- TinyBERT, written out ----------------------------------------------------------------------


def tinybert_att_loss(raw_S, raw_T, mask):
    """TinyBERT's task_distill.py on one layer pair: its BertModel adds (1 - mask) * -10000 to
    the scores of padded keys; entries <= -1e2 become 0 on both sides; MSELoss's mean over
    every entry, padded rows included."""

    def masked(raw):
        extended = (1.0 - mask[:, None, None, :].double()) * -10000.0
        scores = raw.double() + extended
        return torch.where(scores <= -1e2, torch.zeros_like(scores), scores)

    S, T = masked(raw_S), masked(raw_T)
    squares = [float(s - t) ** 2 for s, t in zip(S.flatten(), T.flatten())]
    return sum(squares) / len(squares)


def scores(seed, heads=4):
    raw_S = randn(BATCH, heads, LENGTH, LENGTH, seed=seed, scale=3.0)
    raw_T = randn(BATCH, heads, LENGTH, LENGTH, seed=seed + 1, scale=3.0)
    raw_T[0, 1, 2, 3] = -150.0  # a real score below -1e2: TinyBERT zeroes it too
    return raw_S, raw_T


def test_att_score_mse_is_tinyberts_formula():
    raw_S, raw_T = scores(20)
    mask = mask_of(LENGTHS)
    expected = tinybert_att_loss(raw_S, raw_T, mask)
    additive = (1.0 - mask[:, None, None, :].float()) * -10000.0
    # the models' feature (-10000 already at padded keys), with the mask and without it
    close(att_score_mse_loss(raw_S + additive, raw_T + additive, mask), expected)
    close(att_score_mse_loss(raw_S + additive, raw_T + additive), expected)
    # raw scores: the mask alone zeroes the padded keys
    close(att_score_mse_loss(raw_S, raw_T, mask), expected)
    # padded rows count, as in TinyBERT: changing one changes the loss
    changed = raw_S.clone()
    changed[1, :, 5, :4] += 1.0
    assert att_score_mse_loss(changed, raw_T, mask) != att_score_mse_loss(raw_S, raw_T, mask)


def test_att_score_mse_refuses_other_head_counts():
    raw_S, _ = scores(22, heads=4)
    _, raw_T = scores(24, heads=3)
    with pytest.raises(ValueError, match="same number of attention heads"):
        att_score_mse_loss(raw_S, raw_T, mask_of(LENGTHS))


# ----- the match format ----------------------------------------------------------------------------


def relation_match(**extra):
    return {"layer_T": 5, "layer_S": 3, "feature": "relation", "loss": "relation_kl", "weight": 1, **extra}


def test_the_losses_are_registered_under_their_names():
    assert MATCH_LOSS_MAP["relation_kl"] is relation_kl_loss
    assert MATCH_LOSS_MAP["att_score_mse"] is att_score_mse_loss


def test_a_relation_match_keeps_its_options_and_gives_them_to_the_loss():
    match = IntermediateMatch.from_dict(relation_match(relation_heads=6, relation_weights=[1, 0, 2]), 0)
    assert match.loss_options() == {"relation_heads": 6, "relation_weights": [1, 0, 2]}
    assert match.as_dict() == relation_match(relation_heads=6, relation_weights=[1, 0, 2])
    assert IntermediateMatch.from_dict(relation_match(), 0).loss_options() == {}


@pytest.mark.parametrize(
    "match, message",
    [
        (relation_match(relation_heads=0), "relation_heads must be a positive integer, got 0"),
        (relation_match(relation_heads=True), "relation_heads must be a positive integer"),
        (relation_match(relation_weights=[1, 1]), "relation_weights must be a list of 3 numbers"),
        (relation_match(relation_weights=[1, -1, 1]), "relation_weights must be a list of 3 numbers"),
        (relation_match(relation_head=12), "unknown key.*'relation_head'.*relation_heads"),
        (relation_match(feature="hidden"), "loss 'relation_kl' reads feature 'relation', not 'hidden'"),
        (
            relation_match(loss="hidden_mse"),
            "feature 'relation' is read by loss 'relation_kl', not 'hidden_mse'",
        ),
        (
            relation_match(feature="hidden", loss="att_score_mse"),
            "loss 'att_score_mse' reads feature 'attention_scores' or 'attention', not 'hidden'",
        ),
        (
            relation_match(feature="attention_scores", loss="cos"),
            "feature 'attention_scores' is read by loss 'att_score_mse' or 'attention_mse'.*, not 'cos'",
        ),
        (relation_match(proj=["linear", 12, 18]), "the 'relation' feature takes no proj"),
        (
            {**relation_match(feature="attention_scores", loss="att_score_mse"), "relation_heads": 4},
            "loss 'att_score_mse' takes no relation_heads",
        ),
    ],
)
def test_a_wrong_relation_match_is_named(match, message):
    with pytest.raises(ValueError, match=r"intermediate_matches\[2\]: " + message):
        IntermediateMatch.from_dict(match, 2)


def test_a_loss_of_ones_own_may_read_the_new_features():
    def first_query_mse(relation_S, relation_T, mask=None, relation_heads=1):
        return (relation_S[0].mean() - relation_T[0].mean()) ** 2

    register_new("MATCH_LOSS_MAP", "first_query_mse_test", first_query_mse)
    try:
        match = IntermediateMatch.from_dict(relation_match(loss="first_query_mse_test", relation_heads=2), 0)
        assert match.loss_options() == {"relation_heads": 2}
        with pytest.raises(ValueError, match="takes no relation_weights"):
            IntermediateMatch.from_dict(
                relation_match(loss="first_query_mse_test", relation_weights=[1, 1, 1]), 0
            )
    finally:
        del MATCH_LOSS_MAP["first_query_mse_test"]
