"""TextBrewer alias: the module path `textbrewer.data_utils` (code in augmentation.py):
the token-list augmentations."""

from .augmentation import deleting, long_disorder, masking, n_gram_sampling, short_disorder

__all__ = ["masking", "deleting", "n_gram_sampling", "short_disorder", "long_disorder"]
