"""Match losses beyond TextBrewer's: MiniLMv2's self-attention relations, TinyBERT's attention scores.

Both compare length x length matrices, so neither needs a projection. They take the match loss
signature (feature_S, feature_T, mask=None); relation_kl also takes the match's relation_heads
and relation_weights (IntermediateMatch passes them). Inputs are cast to float32, as in losses.py.
See docs/relations.md for what each computes and when to choose it.
"""

import torch
import torch.nn.functional as F

RELATION_HEADS = 12  # MiniLMv2's choice for base-size teachers (48 for large ones)
RELATION_KINDS = ("query", "key", "value")  # the order of the relation feature's first axis
# TinyBERT's task_distill.py: scores at or below this are masked positions (its mask adds -10000).
TINYBERT_MASKED_SCORE = -1e2


def relation_kl_loss(relation_S, relation_T, mask=None, relation_heads=RELATION_HEADS, relation_weights=None):
    """MiniLMv2's multi-head self-attention relation loss between one student and one teacher layer.

    relation_S, relation_T: (3, batch, length, hidden) the layer's query, key and value vectors;
    the two hidden sizes may differ. Each side's vectors X of one kind are split into
    relation_heads heads of hidden / relation_heads, and R = softmax(X_a X_a^T / sqrt(d_a)) row
    by row, over the real tokens (mask). The loss of one kind is KL(R_T || R_S) of each row,
    averaged over the heads and the example's real rows, then over the examples; the three kinds
    (Q-Q, K-K, V-V) are summed with relation_weights (default 1 each).
    """
    weights = (1.0, 1.0, 1.0) if relation_weights is None else tuple(relation_weights)
    if len(weights) != len(RELATION_KINDS):
        raise ValueError(f"relation_kl: relation_weights must hold 3 numbers (Q, K, V), got {weights!r}")
    if relation_S.dim() != 4 or relation_S.size(0) != 3 or relation_T.dim() != 4 or relation_T.size(0) != 3:
        raise ValueError(
            "relation_kl: expected the 'relation' feature, (3, batch, length, hidden) for query, key "
            f"and value; got {tuple(relation_S.shape)} and {tuple(relation_T.shape)}"
        )
    if mask is not None:
        mask = mask.float()
        # each example's real rows, times the heads: the mean's divisor (1 for an empty example)
        rows_per_example = (mask.sum(dim=1) * relation_heads).clamp(min=1)
    total = 0
    for kind, weight in enumerate(weights):
        if weight == 0:
            continue
        log_S = _log_relations(relation_S[kind], relation_heads, mask)
        log_T = _log_relations(relation_T[kind], relation_heads, mask)
        kl = log_T.exp() * (log_T - log_S)  # (batch, heads, length, length)
        if mask is None:
            value = kl.sum(dim=-1).mean()
        else:
            kl = kl * mask[:, None, None, :]  # padded keys have no probability on either side
            per_row = kl.sum(dim=-1) * mask[:, None, :]  # padded rows do not count
            value = (per_row.sum(dim=(1, 2)) / rows_per_example).mean()
        total = total + weight * value
    return total


def _log_relations(vectors, heads, mask):
    """log softmax(X_a X_a^T / sqrt(d)) per head a: (batch, heads, length, length), padded keys out."""
    batch, length, hidden = vectors.shape
    if hidden % heads:
        raise ValueError(
            f"relation_kl: hidden size {hidden} is not divisible by relation_heads {heads}; "
            "choose relation_heads dividing both models' hidden sizes"
        )
    size = hidden // heads
    split = vectors.float().view(batch, length, heads, size).transpose(1, 2)  # (batch, heads, L, d)
    scores = torch.matmul(split, split.transpose(-1, -2)) / size**0.5
    if mask is not None:
        # the smallest float, not -inf: a padded key then gives 0 * (min - min) = 0, never NaN
        scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def att_score_mse_loss(scores_S, scores_T, mask=None):
    """TinyBERT's attention loss: the mean squared error between pre-softmax attention scores.

    scores_S, scores_T: (batch, heads, length, length) with the same number of heads. As
    TinyBERT's task_distill.py does, entries at or below -1e2 (where its additive mask put
    -10000) are set to 0 on both sides, and with a mask the padded keys' columns too; padded
    rows keep their scores. The mean runs over every entry, so, as in TinyBERT, the value
    depends on the length the batch is padded to.
    """
    if scores_S.shape != scores_T.shape:
        raise ValueError(
            "att_score_mse compares the scores head by head and position by position: the student's "
            f"{tuple(scores_S.shape)} against the teacher's {tuple(scores_T.shape)} (batch, heads, "
            "length, length); the two models need the same number of attention heads"
        )
    scores_S, scores_T = _tinybert_zeroed(scores_S.float(), mask), _tinybert_zeroed(scores_T.float(), mask)
    return F.mse_loss(scores_S, scores_T)


def _tinybert_zeroed(scores, mask):
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :] == 0, 0.0)
    return torch.where(scores <= TINYBERT_MASKED_SCORE, torch.zeros_like(scores), scores)
