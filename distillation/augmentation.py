"""Token-list augmentations with TextBrewer's names and arguments, for making extra training data.

Each takes a list of tokens (or ids) and returns a new list. They draw from numpy's global random
generator, one draw per decision in the same order as TextBrewer 0.2.1, so that a seeded run
gives the same lists as TextBrewer's.
"""

import numpy as np


def masking(tokens, p=0.1, mask="[MASK]"):
    """Each token replaced by `mask` with probability p."""
    return [mask if np.random.rand() < p else token for token in tokens]


def deleting(tokens, p=0.1):
    """Each token dropped with probability p."""
    kept = np.random.binomial(1, 1 - p, len(tokens))
    return [token for token, keep in zip(tokens, kept) if keep == 1]


def n_gram_sampling(tokens, p_ng=(0.2, 0.2, 0.2, 0.2, 0.2), l_ng=(1, 2, 3, 4, 5)):
    """A random span of the tokens, its length drawn from l_ng with probabilities p_ng.

    A list shorter than the drawn length is returned whole (TextBrewer raises an error there).
    """
    length = np.random.choice(l_ng, p=p_ng)
    start = np.random.randint(0, max(len(tokens) - length + 1, 1))
    return tokens[start : start + length]


def short_disorder(tokens, p=(0.9, 0.1, 0, 0, 0)):
    """Local reorderings: at each position one of five changes of the next three tokens abc,
    drawn with probabilities p: abc (none), bac, cba, cab, bca. After a change the walk goes on
    past the tokens it moved; where only two tokens remain, any change swaps them."""
    outputs = list(tokens)
    i = 0
    while i < len(outputs) - 1:
        kind = np.random.choice(5, p=p)
        if kind == 0:
            i += 1
        elif kind == 1 or i == len(outputs) - 2:
            outputs[i], outputs[i + 1] = outputs[i + 1], outputs[i]
            i += 2
        else:
            first, second, third = outputs[i : i + 3]
            outputs[i : i + 3] = {
                2: [third, second, first],
                3: [third, first, second],
                4: [second, third, first],
            }[kind]
            i += 3
    return outputs


def long_disorder(tokens, p=0.1, length=20):
    """Swap the two halves of spans of `length` tokens (rounded up to even), each span starting
    where a draw below p falls; a length of at most 1 is a fraction of the list's length.

    long_disorder(list(range(11)), p=1, length=0.4) == [2, 3, 0, 1, 6, 7, 4, 5, 8, 9, 10]
    """
    outputs = list(tokens)
    if int(length) <= 1:
        length = len(tokens) * length
    span = (int(length) + 1) // 2 * 2
    if span < 2:  # nothing to swap (and TextBrewer would loop forever)
        return outputs
    half = span // 2
    i = 0
    while i <= len(outputs) - span:
        if np.random.rand() < p:
            outputs[i : i + span] = outputs[i + half : i + span] + outputs[i : i + half]
            i += span
        else:
            i += 1
    return outputs
