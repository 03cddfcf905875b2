"""Every loss of KD_LOSS_MAP and MATCH_LOSS_MAP on a padded batch against the same loss computed
example by example on the unpadded sequences.

tests/test_losses.py checks the formulas loop by loop; here the reference crops each example to
its real tokens (padding sits at the end), computes the per-example sums with plain tensor
algebra, and combines them as TextBrewer 0.2.1 does. The masked implementation multiplies by
masks instead, so the two share no code path. Also: bfloat16 inputs give float32 losses, every
loss sends a gradient to the student's side, and the per-example temperature works for both KD
losses.
"""
import pytest
import torch

from distillation import KD_LOSS_MAP, MATCH_LOSS_MAP

BATCH, LENGTH, HEADS, HIDDEN_S, HIDDEN_T, CLASSES = 3, 6, 2, 4, 5, 4
LENGTHS = [6, 4, 1]  # real tokens per example: one full, one padded, one with [CLS] only
MASKED_SCORE = -1e-3  # without a mask, attention entries at or below this count as masked


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def padding_mask():
    """(batch, length) with 1 on the first LENGTHS[b] positions of example b."""
    return (torch.arange(LENGTH)[None, :] < torch.tensor(LENGTHS)[:, None]).long()


def close(actual, expected):
    assert actual.dtype == torch.float32
    assert actual.item() == pytest.approx(float(expected), rel=1e-5, abs=1e-7)


# ----- KD losses -------------------------------------------------------------------------------

def kd_ce_reference(S, T, tau):
    """Per example: -(p_T . log p_S) at that example's temperature, averaged over the batch."""
    losses = [-(torch.softmax(T[b] / tau[b], 0) * torch.log_softmax(S[b] / tau[b], 0)).sum()
              for b in range(S.size(0))]
    return sum(losses) / len(losses)


def kd_mse_reference(S, T, tau):
    """Per example: squared differences of the scaled logits; one mean over all entries."""
    sums = [((S[b] - T[b]) / tau[b]).pow(2).sum() for b in range(S.size(0))]
    return sum(sums) / S.numel()


@pytest.mark.parametrize("name, reference", [("ce", kd_ce_reference), ("mse", kd_mse_reference)])
def test_kd_losses_with_scalar_and_per_example_temperatures(name, reference):
    S, T = randn(BATCH, CLASSES, seed=1), randn(BATCH, CLASSES, seed=2)
    loss = KD_LOSS_MAP[name]
    close(loss(S, T, 3.0), reference(S, T, [3.0] * BATCH))
    per_example = torch.tensor([0.5, 2.0, 7.0])
    close(loss(S, T, per_example), reference(S, T, per_example.tolist()))


# ----- match losses: padded batch vs unpadded examples -----------------------------------------

def cropped(X, b, n, dims):
    """Example b of X with each axis in dims cut to its first n positions."""
    X = X[b]
    for dim in dims:
        X = X.narrow(dim - 1, 0, n)
    return X


def hidden_mse_reference(S, T, lengths):
    squares = sum((cropped(S, b, n, [1]) - cropped(T, b, n, [1])).pow(2).sum() for b, n in enumerate(lengths))
    return squares / (sum(lengths) * S.size(-1))


def cos_reference(S, T, lengths):
    distances = torch.cat([1 - torch.cosine_similarity(cropped(S, b, n, [1]), cropped(T, b, n, [1]), dim=-1)
                           for b, n in enumerate(lengths)])
    return distances.mean()


def pkd_reference(S, T, lengths):
    cls_S = S[:, 0] / S[:, 0].norm(dim=-1, keepdim=True)
    cls_T = T[:, 0] / T[:, 0].norm(dim=-1, keepdim=True)
    return (cls_S - cls_T).pow(2).sum(-1).mean()


def attention_mse_reference(S, T, lengths):
    """S, T: (batch, heads, L, L); entries with a real row and column, over heads * sum n_b^2."""
    squares = sum((cropped(S, b, n, [2, 3]) - cropped(T, b, n, [2, 3])).pow(2).sum()
                  for b, n in enumerate(lengths))
    return squares / (S.size(1) * sum(n * n for n in lengths))


def attention_mse_sum_reference(S, T, lengths):
    return attention_mse_reference(S.sum(1, keepdim=True), T.sum(1, keepdim=True), lengths)


def attention_ce_reference(S, T, lengths):
    """Softmax over the whole row, then the cross-entropy over real columns, mean over real rows."""
    row_losses = []
    for b, n in enumerate(lengths):
        p_T, log_p_S = torch.softmax(T[b], -1), torch.log_softmax(S[b], -1)  # (heads, L, L)
        row_losses.append(-(p_T[:, :n, :n] * log_p_S[:, :n, :n]).sum(-1).flatten())
    return torch.cat(row_losses).mean()


def attention_ce_mean_reference(S, T, lengths):
    return attention_ce_reference(S.mean(1, keepdim=True), T.mean(1, keepdim=True), lengths)


def gram_reference(S, T, lengths):
    """Per example G = X0^T X1 / n_b, (hidden, hidden); mean of the squared differences."""
    def gram(X0, X1, b, n):
        return cropped(X0, b, n, [1]).T @ cropped(X1, b, n, [1]) / n
    squares = [(gram(*S, b, n) - gram(*T, b, n)).pow(2).mean() for b, n in enumerate(lengths)]
    return sum(squares) / len(squares)


def similarity_reference(S, T, lengths, divisor=None):
    """Per example G = X0 X1^T / divisor (default: the hidden size), (n_b, n_b); squared
    differences over sum n_b^2."""
    def similarity(X0, X1, b, n):
        return cropped(X0, b, n, [1]) @ cropped(X1, b, n, [1]).T / (divisor or X0.size(-1))
    squares = sum((similarity(*S, b, n) - similarity(*T, b, n)).pow(2).sum() for b, n in enumerate(lengths))
    return squares / sum(n * n for n in lengths)


def position_features(seed):
    return randn(BATCH, LENGTH, HIDDEN_S, seed=seed), randn(BATCH, LENGTH, HIDDEN_S, seed=seed + 1)


def attention_features(seed):
    return randn(BATCH, HEADS, LENGTH, LENGTH, seed=seed), randn(BATCH, HEADS, LENGTH, LENGTH, seed=seed + 1)


def pair_features(seed, hidden_T):
    S = [randn(BATCH, LENGTH, HIDDEN_S, seed=seed), randn(BATCH, LENGTH, HIDDEN_S, seed=seed + 1)]
    T = [randn(BATCH, LENGTH, hidden_T, seed=seed + 2), randn(BATCH, LENGTH, hidden_T, seed=seed + 3)]
    return S, T


# name -> (reference, features); gram/fsp compare (hidden, hidden) matrices, so S and T share a
# hidden size, while mmd/nst compare (L, L) matrices and take different ones.
MATCH_CASES = {
    "hidden_mse": (hidden_mse_reference, lambda: position_features(10)),
    "cos": (cos_reference, lambda: position_features(12)),
    "pkd": (pkd_reference, lambda: position_features(14)),
    "attention_mse": (attention_mse_reference, lambda: attention_features(16)),
    "attention_mse_sum": (attention_mse_sum_reference, lambda: attention_features(18)),
    "attention_ce": (attention_ce_reference, lambda: attention_features(20)),
    "attention_ce_mean": (attention_ce_mean_reference, lambda: attention_features(22)),
    "gram": (gram_reference, lambda: pair_features(24, HIDDEN_S)),
    "fsp": (gram_reference, lambda: pair_features(28, HIDDEN_S)),
    "mmd": (similarity_reference, lambda: pair_features(32, HIDDEN_T)),
    "nst": (similarity_reference, lambda: pair_features(36, HIDDEN_T)),
}
# With a mask, TextBrewer 0.2.1's mmd/nst divide the similarities by the padded length.
MASKED_DIVISOR = {"mmd": LENGTH, "nst": LENGTH}


def test_every_match_loss_has_a_case_here():
    assert sorted(MATCH_CASES) == sorted(MATCH_LOSS_MAP)


@pytest.mark.parametrize("name", sorted(MATCH_CASES))
def test_masked_loss_equals_the_loss_on_unpadded_examples(name):
    reference, features = MATCH_CASES[name]
    S, T = features()
    extra = {"divisor": MASKED_DIVISOR[name]} if name in MASKED_DIVISOR else {}
    close(MATCH_LOSS_MAP[name](S, T, mask=padding_mask()), reference(S, T, LENGTHS, **extra))


@pytest.mark.parametrize("name", sorted(MATCH_CASES))
def test_unmasked_loss_equals_the_reference_on_full_length(name):
    reference, features = MATCH_CASES[name]
    S, T = features()
    if name.startswith("attention"):
        # Without a mask nothing marks padding, so masked scores are pushed out of range instead;
        # on scores above -1e-3 the unmasked loss is the full-length reference.
        S, T = S.abs(), T.abs()
    close(MATCH_LOSS_MAP[name](S, T), reference(S, T, [LENGTH] * BATCH))


def test_unmasked_attention_mse_treats_scores_below_the_threshold_as_zero():
    S, T = attention_features(40)
    zeroed_S, zeroed_T = S.clamp(min=0) * (S > MASKED_SCORE), T.clamp(min=0) * (T > MASKED_SCORE)
    close(MATCH_LOSS_MAP["attention_mse"](S, T), attention_mse_reference(zeroed_S, zeroed_T, [LENGTH] * BATCH))


def test_unmasked_attention_ce_drops_target_probabilities_of_masked_scores():
    S, T = attention_features(42)
    kept = T > MASKED_SCORE
    expected = -(torch.softmax(T, -1) * kept * torch.log_softmax(S, -1)).sum(-1).mean()
    close(MATCH_LOSS_MAP["attention_ce"](S, T), expected)


# ----- dtypes and gradients ----------------------------------------------------------------------

def all_losses():
    """(name, loss, S, T, extra args) for every loss of both maps."""
    cases = [(f"kd {name}", loss, randn(BATCH, CLASSES, seed=50), randn(BATCH, CLASSES, seed=51), (2.0,))
             for name, loss in KD_LOSS_MAP.items()]
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
    expected = loss(as_dtype(as_dtype(S, torch.bfloat16), torch.float32),
                    as_dtype(as_dtype(T, torch.bfloat16), torch.float32), *extra)
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
