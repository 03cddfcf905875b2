"""Every loss against a plain, loop-by-loop computation of its formula, with and without a mask.

The references below walk over examples, heads and positions one at a time, so they share no
vectorised code with distillation/losses.py. For each masked loss, changing what sits at the
padding positions must not change the value.

Below, a second reference: each loss on a padded batch against the same loss computed example by
example on the examples cropped to their real tokens (CROP_* sizes, cropped_* references), and
every loss in bfloat16 and with a gradient on the student's side.
"""

import math

import pytest
import torch

from distillation import KD_LOSS_MAP, MATCH_LOSS_MAP
from distillation.losses import (
    att_ce_loss,
    att_ce_mean_loss,
    att_mse_loss,
    att_mse_sum_loss,
    cos_loss,
    fsp_loss,
    hid_mse_loss,
    kd_ce_loss,
    kd_mse_loss,
    mmd_loss,
    pkd_loss,
)
from distillation.relation_losses import att_score_mse_loss, relation_kl_loss

BATCH, LENGTH, HEADS, HIDDEN_S, HIDDEN_T, CLASSES = 3, 5, 2, 4, 6, 3
LENGTHS = [5, 3, 2]  # real tokens per example; the rest is padding


@pytest.fixture
def mask():
    mask = torch.zeros(BATCH, LENGTH)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
    return mask


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def real_positions(mask, b):
    return [i for i in range(mask.size(1)) if mask[b, i] == 1]


def softmax_row(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def close(actual, expected):
    assert actual.dtype == torch.float32
    assert actual.item() == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


# ----- KD losses -----------------------------------------------------------------------------


def test_kd_ce_loss_with_a_float_and_a_per_example_temperature():
    logits_S, logits_T = randn(4, CLASSES, seed=1), randn(4, CLASSES, seed=2)
    for temperature in (1, 4.0, torch.tensor([1.0, 2.0, 3.0, 0.5])):
        total = 0.0
        for b in range(4):
            tau = float(temperature[b]) if isinstance(temperature, torch.Tensor) else temperature
            p_T = softmax_row([v / tau for v in logits_T[b].tolist()])
            p_S = softmax_row([v / tau for v in logits_S[b].tolist()])
            total += -sum(t * math.log(s) for t, s in zip(p_T, p_S))
        close(kd_ce_loss(logits_S, logits_T, temperature), total / 4)


def test_kd_mse_loss():
    logits_S, logits_T = randn(4, CLASSES, seed=3), randn(4, CLASSES, seed=4)
    squares = [((s - t) / 2.0) ** 2 for s, t in zip(logits_S.flatten().tolist(), logits_T.flatten().tolist())]
    close(kd_mse_loss(logits_S, logits_T, 2.0), sum(squares) / len(squares))


def test_kd_loss_map():
    assert KD_LOSS_MAP == {"ce": kd_ce_loss, "mse": kd_mse_loss}


# ----- hidden-state losses ---------------------------------------------------------------------


def hidden_mse_reference(S, T, mask=None):
    total, count = 0.0, 0
    for b in range(S.size(0)):
        positions = real_positions(mask, b) if mask is not None else range(S.size(1))
        for i in positions:
            total += sum((s - t) ** 2 for s, t in zip(S[b, i].tolist(), T[b, i].tolist()))
            count += S.size(2)
    return total / count


def cos_reference(S, T, mask=None):
    distances = []
    for b in range(S.size(0)):
        positions = real_positions(mask, b) if mask is not None else range(S.size(1))
        for i in positions:
            s, t = S[b, i].tolist(), T[b, i].tolist()
            dot = sum(x * y for x, y in zip(s, t))
            norms = math.sqrt(sum(x * x for x in s)) * math.sqrt(sum(y * y for y in t))
            distances.append(1 - dot / norms)
    return sum(distances) / len(distances)


def pkd_reference(S, T):
    total = 0.0
    for b in range(S.size(0)):
        s, t = S[b, 0].tolist(), T[b, 0].tolist()
        ns, nt = math.sqrt(sum(x * x for x in s)), math.sqrt(sum(y * y for y in t))
        total += sum((x / ns - y / nt) ** 2 for x, y in zip(s, t))
    return total / S.size(0)


@pytest.mark.parametrize("loss, reference", [(hid_mse_loss, hidden_mse_reference), (cos_loss, cos_reference)])
def test_position_wise_losses(loss, reference, mask):
    S, T = randn(BATCH, LENGTH, HIDDEN_S, seed=5), randn(BATCH, LENGTH, HIDDEN_S, seed=6)
    close(loss(S, T), reference(S, T))
    close(loss(S, T, mask), reference(S, T, mask))


def test_pkd_loss_uses_the_first_position_only(mask):
    S, T = randn(BATCH, LENGTH, HIDDEN_S, seed=7), randn(BATCH, LENGTH, HIDDEN_S, seed=8)
    close(pkd_loss(S, T), pkd_reference(S, T))
    S_other = S.clone()
    S_other[:, 1:] = randn(BATCH, LENGTH - 1, HIDDEN_S, seed=9)
    close(pkd_loss(S_other, T, mask), pkd_reference(S, T))


# ----- attention losses ------------------------------------------------------------------------


def attention_mse_reference(S, T, mask=None):
    """S, T: (batch, heads, L, L). Without a mask, scores <= -1e-3 count as 0."""
    total, count = 0.0, 0
    for b in range(S.size(0)):
        positions = real_positions(mask, b) if mask is not None else range(S.size(-1))
        for h in range(S.size(1)):
            for i in positions:
                for j in positions:
                    s, t = S[b, h, i, j].item(), T[b, h, i, j].item()
                    if mask is None:
                        s, t = (0.0 if s <= -1e-3 else s), (0.0 if t <= -1e-3 else t)
                    total += (s - t) ** 2
                    count += 1
    return total / count


def attention_ce_reference(S, T, mask=None):
    """Row-wise cross-entropy; with a mask, real rows and real columns only (softmax over all)."""
    total, rows = 0.0, 0
    for b in range(S.size(0)):
        positions = real_positions(mask, b) if mask is not None else range(S.size(-1))
        for h in range(S.size(1)):
            for i in positions:
                p_T = softmax_row(T[b, h, i].tolist())
                p_S = softmax_row(S[b, h, i].tolist())
                row = 0.0
                for j in positions:
                    if mask is None and T[b, h, i, j].item() <= -1e-3:
                        continue  # a masked score: its target probability counts as 0
                    row -= p_T[j] * math.log(p_S[j])
                total += row
                rows += 1
    return total / rows


def attention_scores(seed):
    return randn(BATCH, HEADS, LENGTH, LENGTH, seed=seed)


def test_attention_mse(mask):
    S, T = attention_scores(10), attention_scores(11)  # about half the scores are <= -1e-3
    close(att_mse_loss(S, T), attention_mse_reference(S, T))
    close(att_mse_loss(S, T, mask), attention_mse_reference(S, T, mask))


def test_attention_mse_sum_sums_over_heads(mask):
    S, T = attention_scores(12), attention_scores(13)
    summed_S, summed_T = S.sum(dim=1, keepdim=True), T.sum(dim=1, keepdim=True)
    close(att_mse_sum_loss(S, T), attention_mse_reference(summed_S, summed_T))
    close(att_mse_sum_loss(S, T, mask), attention_mse_reference(summed_S, summed_T, mask))
    # Already summed maps (batch, L, L) are taken as they are.
    close(att_mse_sum_loss(S.sum(1), T.sum(1), mask), attention_mse_reference(summed_S, summed_T, mask))


def test_attention_ce(mask):
    S, T = attention_scores(14), attention_scores(15)
    close(att_ce_loss(S, T), attention_ce_reference(S, T))
    close(att_ce_loss(S, T, mask), attention_ce_reference(S, T, mask))


def test_attention_ce_mean_averages_over_heads(mask):
    S, T = attention_scores(16), attention_scores(17)
    mean_S, mean_T = S.mean(dim=1, keepdim=True), T.mean(dim=1, keepdim=True)
    close(att_ce_mean_loss(S, T), attention_ce_reference(mean_S, mean_T))
    close(att_ce_mean_loss(S, T, mask), attention_ce_reference(mean_S, mean_T, mask))


# ----- pair losses -------------------------------------------------------------------------


def gram_reference(X0, X1, mask=None):
    """(batch, hidden, hidden): sum over real positions of x0_i x1_j, divided by the length."""
    batch, length, hidden = X0.shape
    out = torch.zeros(batch, hidden, hidden, dtype=torch.float64)
    for b in range(batch):
        positions = real_positions(mask, b) if mask is not None else range(length)
        for i in range(hidden):
            for j in range(hidden):
                out[b, i, j] = sum(X0[b, p, i].item() * X1[b, p, j].item() for p in positions) / len(
                    positions
                )
    return out


def similarity_reference(X0, X1, divisor=None):
    """(batch, L, L): x0_i . x1_j / divisor (default: hidden)."""
    batch, length, hidden = X0.shape
    divisor = divisor or hidden
    out = torch.zeros(batch, length, length, dtype=torch.float64)
    for b in range(batch):
        for i in range(length):
            for j in range(length):
                out[b, i, j] = sum(X0[b, i, k].item() * X1[b, j, k].item() for k in range(hidden)) / divisor
    return out


def mean_square(a, b, keep=None):
    diffs = ((a - b) ** 2).flatten().tolist()
    keep = keep.flatten().tolist() if keep is not None else [1] * len(diffs)
    return sum(d for d, k in zip(diffs, keep) if k) / sum(keep)


def pairs(hidden, seed):
    return [randn(BATCH, LENGTH, hidden, seed=seed), randn(BATCH, LENGTH, hidden, seed=seed + 1)]


def test_fsp_gram_loss(mask):
    S, T = pairs(HIDDEN_S, 20), pairs(HIDDEN_S, 22)
    close(fsp_loss(S, T), mean_square(gram_reference(*S), gram_reference(*T)))
    close(fsp_loss(S, T, mask), mean_square(gram_reference(*S, mask), gram_reference(*T, mask)))


def test_mmd_nst_loss_with_different_hidden_sizes(mask):
    S, T = pairs(HIDDEN_S, 24), pairs(HIDDEN_T, 26)
    sim_S, sim_T = similarity_reference(*S), similarity_reference(*T)
    close(mmd_loss(S, T), mean_square(sim_S, sim_T))
    # With a mask TextBrewer 0.2.1 divides both similarities by the (padded) length instead.
    sim_S, sim_T = similarity_reference(*S, divisor=LENGTH), similarity_reference(*T, divisor=LENGTH)
    pair_mask = torch.stack([torch.outer(mask[b], mask[b]) for b in range(BATCH)])
    close(mmd_loss(S, T, mask), mean_square(sim_S, sim_T, keep=pair_mask))
    sim_S, sim_T = similarity_reference(*S, divisor=16), similarity_reference(*T, divisor=16)
    close(mmd_loss(S, T, mask, padded_length=16), mean_square(sim_S, sim_T, keep=pair_mask))


def test_mmd_of_a_cut_batch_with_its_padded_length_is_the_padded_batchs(mask):
    """main.py cuts each batch to its longest example; padded_length keeps the value."""
    S, T = pairs(HIDDEN_S, 24), pairs(HIDDEN_T, 26)
    mask[:, 3:] = 0  # the longest example has 3 real tokens: columns 3.. are padding for all
    cut = lambda xs: [x[:, :3] for x in xs]
    expected = mmd_loss(S, T, mask)
    assert mmd_loss(cut(S), cut(T), mask[:, :3]).item() != pytest.approx(expected.item(), rel=1e-3)
    close(mmd_loss(cut(S), cut(T), mask[:, :3], padded_length=LENGTH), expected.item())
    with pytest.raises(ValueError, match="padded_length 2 is shorter than the batch"):
        mmd_loss(S, T, mask, padded_length=2)


def test_match_loss_map_names():
    assert MATCH_LOSS_MAP == {
        "attention_mse_sum": att_mse_sum_loss,
        "attention_mse": att_mse_loss,
        "attention_ce_mean": att_ce_mean_loss,
        "attention_ce": att_ce_loss,
        "hidden_mse": hid_mse_loss,
        "cos": cos_loss,
        "pkd": pkd_loss,
        "gram": fsp_loss,
        "fsp": fsp_loss,
        "mmd": mmd_loss,
        "nst": mmd_loss,
        "relation_kl": relation_kl_loss,
        "att_score_mse": att_score_mse_loss,
    }


# ----- padding does not count --------------------------------------------------------------


def scramble_padding(tensor, mask, seed, dims):
    """New values wherever one of `dims` (the length axes) indexes a padding position."""
    padding = torch.zeros(tensor.shape, dtype=torch.bool)
    for dim in dims:
        shape = [1] * tensor.dim()
        shape[0], shape[dim] = BATCH, LENGTH
        padding |= (mask == 0).view(shape).expand(tensor.shape)
    return torch.where(padding, randn(*tensor.shape, seed=seed) * 10, tensor)


@pytest.mark.parametrize("name", ["hidden_mse", "cos", "pkd"])
def test_padding_does_not_change_position_wise_losses(name, mask):
    loss = MATCH_LOSS_MAP[name]
    S, T = randn(BATCH, LENGTH, HIDDEN_S, seed=30), randn(BATCH, LENGTH, HIDDEN_S, seed=31)
    expected = loss(S, T, mask)
    close(loss(scramble_padding(S, mask, 32, [1]), scramble_padding(T, mask, 33, [1]), mask), expected)


@pytest.mark.parametrize("name", ["attention_mse", "attention_mse_sum"])
def test_padding_does_not_change_attention_mse_losses(name, mask):
    loss = MATCH_LOSS_MAP[name]
    S, T = attention_scores(34), attention_scores(35)
    expected = loss(S, T, mask)
    scrambled_S, scrambled_T = (scramble_padding(x, mask, seed, [2, 3]) for x, seed in ((S, 36), (T, 37)))
    close(loss(scrambled_S, scrambled_T, mask), expected)


@pytest.mark.parametrize("name", ["attention_ce", "attention_ce_mean"])
def test_padding_does_not_change_attention_ce_losses(name, mask):
    """The softmax of a row runs over all its columns (as in TextBrewer), so padding columns are
    where a model puts large negative scores; any such scores give the same loss. Padding rows
    may hold anything."""
    loss = MATCH_LOSS_MAP[name]
    S, T = attention_scores(38), attention_scores(39)
    padded_columns = (mask == 0)[:, None, None, :].expand_as(S)
    S, T = S.masked_fill(padded_columns, -1e4), T.masked_fill(padded_columns, -1e4)
    expected = loss(S, T, mask)
    other_S = torch.where(padded_columns, -2e4 + randn(*S.shape, seed=40), scramble_padding(S, mask, 41, [2]))
    other_T = torch.where(padded_columns, -3e4 + randn(*T.shape, seed=42), scramble_padding(T, mask, 43, [2]))
    close(loss(other_S, other_T, mask), expected)


@pytest.mark.parametrize(
    "name, hidden_T", [("fsp", HIDDEN_S), ("gram", HIDDEN_S), ("mmd", HIDDEN_T), ("nst", HIDDEN_T)]
)
def test_padding_does_not_change_pair_losses(name, hidden_T, mask):
    loss = MATCH_LOSS_MAP[name]
    S, T = pairs(HIDDEN_S, 44), pairs(hidden_T, 46)
    expected = loss(S, T, mask)
    other_S = [scramble_padding(x, mask, 48 + i, [1]) for i, x in enumerate(S)]
    other_T = [scramble_padding(x, mask, 50 + i, [1]) for i, x in enumerate(T)]
    close(loss(other_S, other_T, mask), expected)


def test_float16_inputs_give_a_float32_loss():
    """bfloat16, loss by loss: test_bfloat16_inputs_give_a_float32_loss below."""
    S, T = randn(BATCH, CLASSES, seed=52), randn(BATCH, CLASSES, seed=53)
    assert kd_ce_loss(S.half(), T.half(), 2.0).dtype == torch.float32


# ===== Against examples cropped to their real tokens ==================================
# (was tests/test_core_losses.py) Every loss of KD_LOSS_MAP and MATCH_LOSS_MAP on a padded batch against the same loss computed
# example by example on the unpadded sequences.
#
# tests/test_losses.py checks the formulas loop by loop; here the reference crops each example to
# its real tokens (padding sits at the end), computes the per-example sums with plain tensor
# algebra, and combines them as TextBrewer 0.2.1 does. The masked implementation multiplies by
# masks instead, so the two share no code path. Also: bfloat16 inputs give float32 losses, every
# loss sends a gradient to the student's side, and the per-example temperature works for both KD
# losses.

CROP_BATCH, CROP_LENGTH, CROP_HEADS, CROP_HIDDEN_S, CROP_HIDDEN_T, CROP_CLASSES = 3, 6, 2, 4, 5, 4
CROP_LENGTHS = [6, 4, 1]  # real tokens per example: one full, one padded, one with [CLS] only
MASKED_SCORE = -1e-3  # without a mask, attention entries at or below this count as masked


def cropped_randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def padding_mask():
    """(batch, length) with 1 on the first CROP_LENGTHS[b] positions of example b."""
    return (torch.arange(CROP_LENGTH)[None, :] < torch.tensor(CROP_LENGTHS)[:, None]).long()


def cropped_close(actual, expected):
    assert actual.dtype == torch.float32
    assert actual.item() == pytest.approx(float(expected), rel=1e-5, abs=1e-7)


# ----- KD losses -------------------------------------------------------------------------------


def kd_ce_reference(S, T, tau):
    """Per example: -(p_T . log p_S) at that example's temperature, averaged over the batch."""
    losses = [
        -(torch.softmax(T[b] / tau[b], 0) * torch.log_softmax(S[b] / tau[b], 0)).sum()
        for b in range(S.size(0))
    ]
    return sum(losses) / len(losses)


def kd_mse_reference(S, T, tau):
    """Per example: squared differences of the scaled logits; one mean over all entries."""
    sums = [((S[b] - T[b]) / tau[b]).pow(2).sum() for b in range(S.size(0))]
    return sum(sums) / S.numel()


@pytest.mark.parametrize("name, reference", [("ce", kd_ce_reference), ("mse", kd_mse_reference)])
def test_kd_losses_with_scalar_and_per_example_temperatures(name, reference):
    S, T = cropped_randn(CROP_BATCH, CROP_CLASSES, seed=1), cropped_randn(CROP_BATCH, CROP_CLASSES, seed=2)
    loss = KD_LOSS_MAP[name]
    cropped_close(loss(S, T, 3.0), reference(S, T, [3.0] * CROP_BATCH))
    per_example = torch.tensor([0.5, 2.0, 7.0])
    cropped_close(loss(S, T, per_example), reference(S, T, per_example.tolist()))


# ----- match losses: padded batch vs unpadded examples -----------------------------------------


def cropped(X, b, n, dims):
    """Example b of X with each axis in dims cut to its first n positions."""
    X = X[b]
    for dim in dims:
        X = X.narrow(dim - 1, 0, n)
    return X


def cropped_hidden_mse_reference(S, T, lengths):
    squares = sum((cropped(S, b, n, [1]) - cropped(T, b, n, [1])).pow(2).sum() for b, n in enumerate(lengths))
    return squares / (sum(lengths) * S.size(-1))


def cropped_cos_reference(S, T, lengths):
    distances = torch.cat(
        [
            1 - torch.cosine_similarity(cropped(S, b, n, [1]), cropped(T, b, n, [1]), dim=-1)
            for b, n in enumerate(lengths)
        ]
    )
    return distances.mean()


def cropped_pkd_reference(S, T, lengths):
    cls_S = S[:, 0] / S[:, 0].norm(dim=-1, keepdim=True)
    cls_T = T[:, 0] / T[:, 0].norm(dim=-1, keepdim=True)
    return (cls_S - cls_T).pow(2).sum(-1).mean()


def cropped_attention_mse_reference(S, T, lengths):
    """S, T: (batch, heads, L, L); entries with a real row and column, over heads * sum n_b^2."""
    squares = sum(
        (cropped(S, b, n, [2, 3]) - cropped(T, b, n, [2, 3])).pow(2).sum() for b, n in enumerate(lengths)
    )
    return squares / (S.size(1) * sum(n * n for n in lengths))


def attention_mse_sum_reference(S, T, lengths):
    return cropped_attention_mse_reference(S.sum(1, keepdim=True), T.sum(1, keepdim=True), lengths)


def cropped_attention_ce_reference(S, T, lengths):
    """Softmax over the whole row, then the cross-entropy over real columns, mean over real rows."""
    row_losses = []
    for b, n in enumerate(lengths):
        p_T, log_p_S = torch.softmax(T[b], -1), torch.log_softmax(S[b], -1)  # (heads, L, L)
        row_losses.append(-(p_T[:, :n, :n] * log_p_S[:, :n, :n]).sum(-1).flatten())
    return torch.cat(row_losses).mean()


def attention_ce_mean_reference(S, T, lengths):
    return cropped_attention_ce_reference(S.mean(1, keepdim=True), T.mean(1, keepdim=True), lengths)


def cropped_gram_reference(S, T, lengths):
    """Per example G = X0^T X1 / n_b, (hidden, hidden); mean of the squared differences."""

    def gram(X0, X1, b, n):
        return cropped(X0, b, n, [1]).T @ cropped(X1, b, n, [1]) / n

    squares = [(gram(*S, b, n) - gram(*T, b, n)).pow(2).mean() for b, n in enumerate(lengths)]
    return sum(squares) / len(squares)


def cropped_similarity_reference(S, T, lengths, divisor=None):
    """Per example G = X0 X1^T / divisor (default: the hidden size), (n_b, n_b); squared
    differences over sum n_b^2."""

    def similarity(X0, X1, b, n):
        return cropped(X0, b, n, [1]) @ cropped(X1, b, n, [1]).T / (divisor or X0.size(-1))

    squares = sum((similarity(*S, b, n) - similarity(*T, b, n)).pow(2).sum() for b, n in enumerate(lengths))
    return squares / sum(n * n for n in lengths)


def position_features(seed):
    return cropped_randn(CROP_BATCH, CROP_LENGTH, CROP_HIDDEN_S, seed=seed), cropped_randn(
        CROP_BATCH, CROP_LENGTH, CROP_HIDDEN_S, seed=seed + 1
    )


def attention_features(seed):
    return cropped_randn(CROP_BATCH, CROP_HEADS, CROP_LENGTH, CROP_LENGTH, seed=seed), cropped_randn(
        CROP_BATCH, CROP_HEADS, CROP_LENGTH, CROP_LENGTH, seed=seed + 1
    )


def pair_features(seed, hidden_T):
    S = [
        cropped_randn(CROP_BATCH, CROP_LENGTH, CROP_HIDDEN_S, seed=seed),
        cropped_randn(CROP_BATCH, CROP_LENGTH, CROP_HIDDEN_S, seed=seed + 1),
    ]
    T = [
        cropped_randn(CROP_BATCH, CROP_LENGTH, hidden_T, seed=seed + 2),
        cropped_randn(CROP_BATCH, CROP_LENGTH, hidden_T, seed=seed + 3),
    ]
    return S, T


def cropped_relation_kl_reference(S, T, lengths, heads=12):
    """Per example, on its real tokens: for each of Q, K, V, KL(softmax(X_a X_a^T / sqrt(d))
    of the teacher || of the student), summed over rows, over heads * n_b; the examples' mean,
    summed over the three kinds. (tests/core/test_relation_losses.py: loop by loop.)"""

    def log_relations(X, n):
        X = X[:n].reshape(n, heads, -1).transpose(0, 1)  # (heads, n, d)
        return torch.log_softmax(X @ X.transpose(1, 2) / X.size(-1) ** 0.5, dim=-1)

    total = 0
    for kind in range(3):
        per_example = []
        for b, n in enumerate(lengths):
            log_S, log_T = log_relations(S[kind, b], n), log_relations(T[kind, b], n)
            per_example.append((log_T.exp() * (log_T - log_S)).sum() / (heads * n))
        total = total + sum(per_example) / len(per_example)
    return total


def tinybert_scores_reference(S, T, lengths):
    """TinyBERT: padded keys' scores (its -10000) and any score <= -1e2 are 0; the mean over
    every entry, padded rows included."""
    keep = torch.ones(S.shape, dtype=torch.bool)
    for b, n in enumerate(lengths):
        keep[b, :, :, n:] = False
    zeroed = [torch.where(keep & (X > -1e2), X, torch.zeros_like(X)) for X in (S, T)]
    return (zeroed[0] - zeroed[1]).pow(2).sum() / S.numel()


def relation_features(seed):
    """(3, batch, length, hidden): 12 relation heads (the default) of sizes 1 and 2."""
    return cropped_randn(3, CROP_BATCH, CROP_LENGTH, 12, seed=seed), cropped_randn(
        3, CROP_BATCH, CROP_LENGTH, 24, seed=seed + 1
    )


# name -> (reference, features); gram/fsp compare (hidden, hidden) matrices, so S and T share a
# hidden size, while mmd/nst compare (L, L) matrices and take different ones.
MATCH_CASES = {
    "hidden_mse": (cropped_hidden_mse_reference, lambda: position_features(10)),
    "cos": (cropped_cos_reference, lambda: position_features(12)),
    "pkd": (cropped_pkd_reference, lambda: position_features(14)),
    "attention_mse": (cropped_attention_mse_reference, lambda: attention_features(16)),
    "attention_mse_sum": (attention_mse_sum_reference, lambda: attention_features(18)),
    "attention_ce": (cropped_attention_ce_reference, lambda: attention_features(20)),
    "attention_ce_mean": (attention_ce_mean_reference, lambda: attention_features(22)),
    "gram": (cropped_gram_reference, lambda: pair_features(24, CROP_HIDDEN_S)),
    "fsp": (cropped_gram_reference, lambda: pair_features(28, CROP_HIDDEN_S)),
    "mmd": (cropped_similarity_reference, lambda: pair_features(32, CROP_HIDDEN_T)),
    "nst": (cropped_similarity_reference, lambda: pair_features(36, CROP_HIDDEN_T)),
    "relation_kl": (cropped_relation_kl_reference, lambda: relation_features(38)),
    "att_score_mse": (tinybert_scores_reference, lambda: attention_features(40)),
}
# With a mask, TextBrewer 0.2.1's mmd/nst divide the similarities by the padded length.
MASKED_DIVISOR = {"mmd": CROP_LENGTH, "nst": CROP_LENGTH}


def test_every_match_loss_has_a_case_here():
    assert sorted(MATCH_CASES) == sorted(MATCH_LOSS_MAP)


@pytest.mark.parametrize("name", sorted(MATCH_CASES))
def test_masked_loss_equals_the_loss_on_unpadded_examples(name):
    reference, features = MATCH_CASES[name]
    S, T = features()
    extra = {"divisor": MASKED_DIVISOR[name]} if name in MASKED_DIVISOR else {}
    cropped_close(MATCH_LOSS_MAP[name](S, T, mask=padding_mask()), reference(S, T, CROP_LENGTHS, **extra))


@pytest.mark.parametrize("name", sorted(MATCH_CASES))
def test_unmasked_loss_equals_the_reference_on_full_length(name):
    reference, features = MATCH_CASES[name]
    S, T = features()
    if name.startswith("attention"):
        # Without a mask nothing marks padding, so masked scores are pushed out of range instead;
        # on scores above -1e-3 the unmasked loss is the full-length reference.
        S, T = S.abs(), T.abs()
    cropped_close(MATCH_LOSS_MAP[name](S, T), reference(S, T, [CROP_LENGTH] * CROP_BATCH))


def test_unmasked_attention_mse_treats_scores_below_the_threshold_as_zero():
    S, T = attention_features(40)
    zeroed_S, zeroed_T = S.clamp(min=0) * (S > MASKED_SCORE), T.clamp(min=0) * (T > MASKED_SCORE)
    cropped_close(
        MATCH_LOSS_MAP["attention_mse"](S, T),
        cropped_attention_mse_reference(zeroed_S, zeroed_T, [CROP_LENGTH] * CROP_BATCH),
    )


def test_unmasked_attention_ce_drops_target_probabilities_of_masked_scores():
    S, T = attention_features(42)
    kept = T > MASKED_SCORE
    expected = -(torch.softmax(T, -1) * kept * torch.log_softmax(S, -1)).sum(-1).mean()
    cropped_close(MATCH_LOSS_MAP["attention_ce"](S, T), expected)


# ----- dtypes and gradients ----------------------------------------------------------------------


def all_losses():
    """(name, loss, S, T, extra args) for every loss of both maps."""
    cases = [
        (
            f"kd {name}",
            loss,
            cropped_randn(CROP_BATCH, CROP_CLASSES, seed=50),
            cropped_randn(CROP_BATCH, CROP_CLASSES, seed=51),
            (2.0,),
        )
        for name, loss in KD_LOSS_MAP.items()
    ]
    for name in sorted(MATCH_CASES):
        S, T = MATCH_CASES[name][1]()
        cases.append((name, MATCH_LOSS_MAP[name], S, T, (padding_mask(),)))
    return cases


def as_dtype(features, dtype):
    if isinstance(features, list):
        return [x.to(dtype) for x in features]
    return features.to(dtype)


@pytest.mark.parametrize("case", all_losses(), ids=lambda case: case[0])
def test_bfloat16_inputs_give_a_float32_loss(case):
    _, loss, S, T, extra = case
    value = loss(as_dtype(S, torch.bfloat16), as_dtype(T, torch.bfloat16), *extra)
    assert value.dtype == torch.float32
    # The same as the float32 loss of the rounded inputs: the arithmetic itself is float32.
    expected = loss(
        as_dtype(as_dtype(S, torch.bfloat16), torch.float32),
        as_dtype(as_dtype(T, torch.bfloat16), torch.float32),
        *extra,
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("case", all_losses(), ids=lambda case: case[0])
def test_the_student_side_gets_a_gradient(case):
    _, loss, S, T, extra = case
    S = as_dtype(S, torch.float32)
    leaves = S if isinstance(S, list) else [S]
    for leaf in leaves:
        leaf.requires_grad_(True)
    loss(S, as_dtype(T, torch.float32), *extra).backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
