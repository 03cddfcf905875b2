"""Loss functions of the distillers, each a small pure function with one signature.

KD losses take (logits_S, logits_T, temperature); match losses take (feature_S, feature_T, mask=None),
and those whose value depends on the padded length also take padded_length=None (see mmd_loss).
mask is (batch, length) with 1 for real tokens and 0 for padding; where a loss is masked,
padding positions do not change its value. Inputs are cast to float32, so a loss computed on
half-precision activations is still computed in float32.
The formulas follow TextBrewer 0.2.1, so results can be compared with it number for number.
"""

import math

import torch
import torch.nn.functional as F

from .relation_losses import att_score_mse_loss, relation_kl_loss

# TextBrewer's convention without a mask: attention scores at or below this are masked entries.
MASKED_SCORE = -1e-3


def _temperature(temperature, logits):
    """A float, or a per-example tensor (batch,) broadcast over the classes."""
    if isinstance(temperature, torch.Tensor) and temperature.dim() > 0:
        return temperature.to(logits).unsqueeze(-1)
    return temperature


def kd_ce_loss(logits_S, logits_T, temperature=1):
    """Cross-entropy with the teacher's softened distribution: -sum_c p_T(c) log p_S(c), batch mean.

    p = softmax(logits / temperature). logits: (batch, num_classes).
    """
    logits_S, logits_T = logits_S.float(), logits_T.float()
    temperature = _temperature(temperature, logits_S)
    p_T = F.softmax(logits_T / temperature, dim=-1)
    return -(p_T * F.log_softmax(logits_S / temperature, dim=-1)).sum(dim=-1).mean()


def kd_mse_loss(logits_S, logits_T, temperature=1):
    """Mean squared error between the logits divided by the temperature. (batch, num_classes)."""
    logits_S, logits_T = logits_S.float(), logits_T.float()
    temperature = _temperature(temperature, logits_S)
    return F.mse_loss(logits_S / temperature, logits_T / temperature)


def hid_mse_loss(state_S, state_T, mask=None):
    """Mean squared error between hidden states (batch, length, hidden), over real tokens."""
    state_S, state_T = state_S.float(), state_T.float()
    if mask is None:
        return F.mse_loss(state_S, state_T)
    mask = mask.to(state_S)
    squared = F.mse_loss(state_S, state_T, reduction="none") * mask.unsqueeze(-1)
    return squared.sum() / (mask.sum() * state_S.size(-1))


def cos_loss(state_S, state_T, mask=None):
    """1 - cosine similarity of each token's vectors, averaged over real tokens (DistilBERT).

    state: (batch, length, hidden).
    """
    state_S, state_T = state_S.float(), state_T.float()
    if mask is not None:
        keep = mask.bool()
        state_S, state_T = state_S[keep], state_T[keep]  # (real tokens, hidden)
    state_S = state_S.reshape(-1, state_S.size(-1))
    state_T = state_T.reshape(-1, state_T.size(-1))
    target = state_S.new_ones(state_S.size(0))
    return F.cosine_embedding_loss(state_S, state_T, target)


def pkd_loss(state_S, state_T, mask=None):
    """Squared distance between the unit-normalised [CLS] vectors (BERT-PKD); mask is unused.

    state: (batch, length, hidden); only position 0 is compared.
    """
    cls_S, cls_T = state_S[:, 0].float(), state_T[:, 0].float()
    cls_S = cls_S / cls_S.norm(dim=-1, keepdim=True)
    cls_T = cls_T / cls_T.norm(dim=-1, keepdim=True)
    return (cls_S - cls_T).pow(2).sum(dim=-1).mean()


def att_mse_loss(attention_S, attention_T, mask=None):
    """Mean squared error between attention maps (batch, heads, length, length).

    With a mask, only entries whose row and column are real tokens count. Without one,
    entries <= -1e-3 (masked scores) are set to zero first.
    """
    attention_S, attention_T = attention_S.float(), attention_T.float()
    if mask is None:
        return F.mse_loss(_zero_masked_scores(attention_S), _zero_masked_scores(attention_T))
    mask = mask.to(attention_S)  # (batch, length)
    pair_mask = (mask.unsqueeze(-1) * mask.unsqueeze(1)).unsqueeze(1)  # (batch, 1, length, length)
    squared = F.mse_loss(attention_S, attention_T, reduction="none") * pair_mask
    return squared.sum() / (pair_mask.sum() * attention_S.size(1))


def att_mse_sum_loss(attention_S, attention_T, mask=None):
    """Like attention_mse on the maps summed over heads: (batch, heads, L, L) -> (batch, L, L)."""
    if attention_S.dim() == 4:
        attention_S, attention_T = attention_S.float().sum(dim=1), attention_T.float().sum(dim=1)
    return att_mse_loss(attention_S.unsqueeze(1), attention_T.unsqueeze(1), mask)


def att_ce_loss(attention_S, attention_T, mask=None, padded_length=None):
    """Cross-entropy between row-wise softmaxes of attention scores (batch, heads, L, L).

    -sum_k softmax(T)_k log softmax(S)_k per row, averaged over rows (of real tokens, with a mask;
    with a mask the sum also runs over real columns only). As in TextBrewer, the softmax runs
    over every column, padding included. padded_length (with a mask): the length before the
    batch was cut to its longest example; the cut columns count in the softmax as the zeros
    that attention probabilities hold at padding, so the cut does not change the value.
    """
    attention_S, attention_T = attention_S.float(), attention_T.float()
    if mask is not None and padded_length is not None:
        _check_padded_length(padded_length, attention_S.size(-1), "att_ce_loss")
    if mask is not None and padded_length is not None and padded_length > attention_S.size(-1):
        log_cut = math.log(padded_length - attention_S.size(-1))  # log of (cut columns x exp(0))
        log_probs_S = attention_S - _logsumexp_with(attention_S, log_cut)
        probs_T = (attention_T - _logsumexp_with(attention_T, log_cut)).exp()
    else:
        probs_T = F.softmax(attention_T, dim=-1)
        log_probs_S = F.log_softmax(attention_S, dim=-1)
    if mask is None:
        probs_T = torch.where(attention_T <= MASKED_SCORE, torch.zeros_like(probs_T), probs_T)
        return -(probs_T * log_probs_S).sum(dim=-1).mean()
    mask = mask.to(attention_S)
    columns = mask[:, None, None, :] if attention_S.dim() == 4 else mask[:, None, :]
    rows = mask[:, None, :] if attention_S.dim() == 4 else mask
    row_losses = -(probs_T * log_probs_S * columns).sum(dim=-1)  # (batch, [heads,] length)
    rows = rows.expand_as(row_losses)
    return (row_losses * rows).sum() / rows.sum()


def att_ce_mean_loss(attention_S, attention_T, mask=None, padded_length=None):
    """Like attention_ce on the maps averaged over heads: (batch, heads, L, L) -> (batch, L, L)."""
    if attention_S.dim() == 4:
        attention_S, attention_T = attention_S.float().mean(dim=1), attention_T.float().mean(dim=1)
    return att_ce_loss(attention_S, attention_T, mask, padded_length)


def _logsumexp_with(scores, log_extra):
    """log(sum_k exp(scores_k) + exp(log_extra)) over the last dimension, kept."""
    return torch.logaddexp(
        torch.logsumexp(scores, dim=-1, keepdim=True),
        torch.tensor(log_extra, dtype=scores.dtype, device=scores.device),
    )


def _check_padded_length(padded_length, width, name):
    if padded_length < width:
        raise ValueError(f"{name}: padded_length {padded_length} is shorter than the batch ({width})")


def fsp_loss(state_S, state_T, mask=None):
    """Mean squared error between the Gram matrices of two layers (FSP; 'gram' and 'fsp').

    state_S, state_T: pairs [X0, X1] of (batch, length, hidden); G = X0^T X1 / length, which is
    (batch, hidden, hidden). With a mask, padding is zeroed and each example is divided by its
    own number of real tokens.
    """
    S0, S1 = state_S[0].float(), state_S[1].float()
    T0, T1 = state_T[0].float(), state_T[1].float()
    if mask is None:
        length = S1.size(1)
    else:
        mask = mask.to(S0).unsqueeze(-1)  # (batch, length, 1)
        length = mask.sum(dim=1, keepdim=True)  # (batch, 1, 1)
        S0, S1, T0, T1 = S0 * mask, S1 * mask, T0 * mask, T1 * mask
    gram_S = torch.bmm(S0.transpose(1, 2), S1) / length
    gram_T = torch.bmm(T0.transpose(1, 2), T1) / length
    return F.mse_loss(gram_S, gram_T)


def mmd_loss(state_S, state_T, mask=None, padded_length=None):
    """Mean squared error between token-similarity matrices of two layers ('mmd' and 'nst').

    state_S, state_T: pairs [X0, X1] of (batch, length, hidden); the similarity G = X0 X1^T / d
    is (batch, length, length), so student and teacher hidden sizes may differ. As in
    TextBrewer 0.2.1, d is each side's hidden size without a mask; with a mask d is the padded
    length and only entries between two real tokens count. padded_length: the length the
    inputs were padded to before their batch was cut to its longest example (the distillers
    pass DistillationConfig.padded_length), so the cut does not change the value; None: the
    given tensors' length, exactly as TextBrewer.
    """
    S0, S1 = state_S[0].float(), state_S[1].float()
    T0, T1 = state_T[0].float(), state_T[1].float()
    if mask is None:
        gram_S = torch.bmm(S0, S1.transpose(1, 2)) / S1.size(2)
        gram_T = torch.bmm(T0, T1.transpose(1, 2)) / T1.size(2)
        return F.mse_loss(gram_S, gram_T)
    length = padded_length if padded_length is not None else S1.size(1)
    _check_padded_length(length, S1.size(1), "mmd_loss")
    gram_S = torch.bmm(S0, S1.transpose(1, 2)) / length
    gram_T = torch.bmm(T0, T1.transpose(1, 2)) / length
    mask = mask.to(S0)
    pair_mask = mask.unsqueeze(-1) * mask.unsqueeze(1)  # (batch, length, length)
    return (F.mse_loss(gram_S, gram_T, reduction="none") * pair_mask).sum() / pair_mask.sum()


def _zero_masked_scores(attention):
    return torch.where(attention <= MASKED_SCORE, torch.zeros_like(attention), attention)


KD_LOSS_MAP = {"ce": kd_ce_loss, "mse": kd_mse_loss}
PAIR_LOSSES = {"gram", "fsp", "mmd", "nst"}  # they compare two layers: layer_S/layer_T are pairs

MATCH_LOSS_MAP = {
    "hidden_mse": hid_mse_loss,
    "cos": cos_loss,
    "pkd": pkd_loss,
    "attention_mse": att_mse_loss,
    "attention_mse_sum": att_mse_sum_loss,
    "attention_ce": att_ce_loss,
    "attention_ce_mean": att_ce_mean_loss,
    "gram": fsp_loss,
    "fsp": fsp_loss,
    "mmd": mmd_loss,
    "nst": mmd_loss,
    # beyond TextBrewer 0.2.1 (relation_losses.py)
    "relation_kl": relation_kl_loss,
    "att_score_mse": att_score_mse_loss,
}
