"""From a task's files to batches: cached features, and DataLoaders that cut each batch's padding."""

import os

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler

from distillation import EXAMPLE_INDEX_KEY
from feature_cache import load_features
from modeling import UNLABELLED


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded features indexed by a whole list of example indices at once.

    Used with a BatchSampler, a batch is one tensor slice per key instead of `batch_size`
    single-row lookups stacked by the collate function. with_index: each batch also holds the
    examples' indices under 'index' (batch,), the key of the distillers' logit cache.
    teacher_features: one entry per teacher, the features of the same examples as that
    teacher's vocabulary encodes them, or None for a teacher that reads the student's; the
    batch is then {'student': ..., 'teachers': [...]} (distillation.adaptors.split_sides).
    """

    def __init__(self, features, with_index=False, teacher_features=None):
        self.features = features
        self.with_index = with_index
        self.teacher_features = teacher_features

    def __len__(self):
        return len(self.features["input_ids"])

    def __getitem__(self, indices):
        batch = _slice(self.features, indices)
        if self.teacher_features is not None:
            batch = {
                "student": batch,
                "teachers": [
                    _slice(features, indices) if features is not None else batch
                    for features in self.teacher_features
                ],
            }
        if self.with_index:
            batch[EXAMPLE_INDEX_KEY] = torch.as_tensor(indices, dtype=torch.long)
        return batch


def _slice(features, indices):
    batch = {key: tensor[indices] for key, tensor in features.items()}
    # Cut the padding all the batch's examples share (features are padded on the right):
    # masked positions change no output, and every layer's cost grows with the length.
    longest = int(batch["attention_mask"].sum(dim=1).max())
    for key, tensor in batch.items():
        if tensor.dim() == 2:
            tensor = tensor[:, :longest]
        # Features are kept narrow (feature_cache.py); a batch is widened when it is made,
        # into a compact int64 copy, cheap to pin and move (a regression task's float scores
        # stay float).
        batch[key] = tensor.float() if tensor.is_floating_point() else tensor.long()
    return batch


def batch_loader(
    features,
    batch_size,
    shuffle,
    seed=0,
    num_replicas=1,
    rank=0,
    with_index=False,
    num_workers=0,
    teacher_features=None,
):
    """Batches of batch_size examples; when shuffling, process `rank` of num_replicas gets every
    num_replicas-th example of the epoch's permutation, so the processes' k-th batches together
    hold the examples a single process would see in its k-th batch of num_replicas * batch_size.
    num_workers > 0 slices the batches in worker processes, ahead of the training step.
    teacher_features: see FeatureDataset."""
    dataset = FeatureDataset(features, with_index, teacher_features)
    if shuffle:
        # The order of epoch e depends on (seed, e) alone: the distiller calls set_epoch, so a
        # resumed run sees the same batches as an uninterrupted one.
        order = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
    else:
        order = SequentialSampler(dataset)
    sampler = BatchSampler(order, batch_size=batch_size, drop_last=False)
    # Each iteration draws the workers' base seed from `generator`: without one it would come
    # from the global generator, and an evaluation or a resume would move the dropout masks.
    generator = torch.Generator().manual_seed(seed)
    # batch_size=None: each item the sampler yields is already a whole batch of indices.
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
    )


def loader_workers(args, device):
    """--num_workers, or by default 2 on a GPU (batches ready while it computes), 0 on CPUs
    (where a worker would take a core from the model)."""
    if args.num_workers is not None:
        return args.num_workers
    return 2 if torch.device(device).type == "cuda" else 0


def default_cache_dir(args, data_dir):
    """Cache features beside the data; when that folder is read-only, beside the output folder."""
    if os.access(data_dir, os.W_OK):
        return os.path.join(data_dir, "cache")
    return os.path.join(os.path.dirname(os.path.abspath(args.output_dir)), "feature_cache")


def load_split(args, task, data_dir, split, entry):
    """The features of a labelled split ('train' or a dev set's name), or of --transfer_file
    (split TRANSFER, unlabelled), as the model of a model_config entry reads them (its
    tokenizer), cached (feature_cache.py)."""
    cache_dir = args.cache_dir or default_cache_dir(args, data_dir)
    return load_features(task, data_dir, split, entry.tokenizer, entry.vocab_file, args.max_seq_length,
                         cache_dir, transfer_file=args.transfer_file)  # fmt: skip


def with_transfer_set(features, transfer):
    """The training features followed by the transfer set's, whose labels are UNLABELLED (NaN
    for a regression task's scores): the hard-label term leaves them out (modeling.py)."""
    labels = features["labels"]
    if labels.is_floating_point():
        unlabelled = torch.full((len(transfer["input_ids"]),), float("nan"), dtype=labels.dtype)
    else:  # the stored labels are narrow and unsigned: widen both to hold UNLABELLED
        labels = labels.to(torch.int16)
        unlabelled = torch.full((len(transfer["input_ids"]),), UNLABELLED, dtype=torch.int16)
    joined = {key: torch.cat([features[key], transfer[key]]) for key in transfer}
    joined["labels"] = torch.cat([labels, unlabelled])
    return joined


def feature_batches(features, batch_size):
    """Consecutive slices of encoded features, batch_size examples each (no DataLoader)."""
    total = len(features["input_ids"])
    for start in range(0, total, batch_size):
        yield {key: tensor[start : start + batch_size] for key, tensor in features.items()}
