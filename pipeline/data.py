"""From a task's files to batches: cached features, and DataLoaders that cut each batch's padding
(and, with --group_by_length, draw batches of similar lengths)."""

import dataclasses
import math

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler

from distillation import EXAMPLE_INDEX_KEY
from modeling import UNLABELLED
from pipeline.feature_cache import TRANSFER, load_features

MEGA_BATCH = 50  # --group_by_length: the batches sorted by length together


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded features indexed by a whole list of example indices at once.

    Used with a BatchSampler, a batch is one tensor slice per key instead of `batch_size`
    single-row lookups stacked by the collate function. with_index: each batch also holds the
    examples' indices under 'index' (batch,), the key of the distillers' logit cache.
    teacher_features: one entry per teacher, the features of the same examples as that
    teacher's vocabulary encodes them, or None for a teacher that reads the student's; the
    batch is then {'student': ..., 'teachers': [...]} (distillation.adaptors.split_sides).
    pad_to_multiple_of: each batch's cut length is rounded up to a multiple of it, so a compiled
    model sees a few shapes rather than one per length.
    """

    def __init__(self, features, with_index=False, teacher_features=None, pad_to_multiple_of=None):
        self.features = features
        self.with_index = with_index
        self.teacher_features = teacher_features
        self.pad_to_multiple_of = pad_to_multiple_of

    def __len__(self):
        return len(self.features["input_ids"])

    def __getitem__(self, indices):
        batch = _slice(self.features, indices, self.pad_to_multiple_of)
        if self.teacher_features is not None:
            batch = {
                "student": batch,
                "teachers": [
                    _slice(features, indices, self.pad_to_multiple_of) if features is not None else batch
                    for features in self.teacher_features
                ],
            }
        if self.with_index:
            batch[EXAMPLE_INDEX_KEY] = torch.as_tensor(indices, dtype=torch.long)
        return batch


def _slice(features, indices, pad_to_multiple_of=None):
    batch = {key: tensor[indices] for key, tensor in features.items()}
    # Cut the padding all the batch's examples share (features are padded on the right):
    # masked positions change no output, and every layer's cost grows with the length.
    longest = int(batch["attention_mask"].sum(dim=1).max())
    if pad_to_multiple_of:
        longest = min(-(-longest // pad_to_multiple_of) * pad_to_multiple_of, batch["attention_mask"].size(1))
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
    group_by_length=False,
    pad_to_multiple_of=None,
):
    """Batches of batch_size examples; when shuffling, process `rank` of num_replicas gets every
    num_replicas-th example of the epoch's permutation, so the processes' k-th batches together
    hold the examples a single process would see in its k-th batch of num_replicas * batch_size.
    group_by_length (with shuffle): the permutation is grouped by length (LengthGroupedBatches),
    split the same way. num_workers > 0 slices the batches in worker processes, ahead of the
    training step. teacher_features, pad_to_multiple_of: see FeatureDataset."""
    dataset = FeatureDataset(features, with_index, teacher_features, pad_to_multiple_of)
    # The order of epoch e depends on (seed, e) alone: the distiller calls set_epoch, so a
    # resumed run sees the same batches as an uninterrupted one.
    if shuffle and group_by_length:
        lengths = features["attention_mask"].sum(dim=1)
        sampler = LengthGroupedBatches(lengths, batch_size, seed, num_replicas, rank)
    else:
        if shuffle:
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


class LengthGroupedBatches:
    """The batches of process `rank` of num_replicas, grouped by length (--group_by_length).

    Each epoch, the permutation of the examples drawn from (seed, epoch) is cut into mega-batches
    of mega_batch global batches (batch_size x num_replicas examples); each mega-batch is sorted
    by length and cut into global batches, so that a batch holds examples of similar lengths and
    little padding. The global batches are shuffled (the last, shorter one stays last, padded to
    a multiple of num_replicas with the epoch's first examples, as DistributedSampler pads), and
    process `rank` takes every num_replicas-th example of each: the processes' k-th batches
    together hold the k-th batch of a single process with the global batch size.
    """

    def __init__(self, lengths, batch_size, seed, num_replicas=1, rank=0, mega_batch=MEGA_BATCH):
        self.lengths = torch.as_tensor(lengths)  # (examples,) the real tokens of each
        self.batch_size = batch_size
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.mega_batch = mega_batch
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return math.ceil(len(self.lengths) / (self.batch_size * self.num_replicas))

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        size = self.batch_size * self.num_replicas
        batches = []
        for mega_batch in order.split(size * self.mega_batch):
            by_length = torch.sort(self.lengths[mega_batch], descending=True, stable=True).indices
            batches += mega_batch[by_length].split(size)
        full = len(batches) - (len(batches[-1]) < size)
        batches = [batches[i] for i in torch.randperm(full, generator=generator)] + batches[full:]
        padding = -len(batches[-1]) % self.num_replicas
        # (repeated when the first batch is shorter than the padding: fewer examples than processes)
        batches[-1] = torch.cat([batches[-1], batches[0].repeat(padding // len(batches[0]) + 1)[:padding]])
        for batch in batches:
            yield batch[self.rank :: self.num_replicas].tolist()


def loader_workers(num_workers, device):
    """num_workers, or by default 2 on a GPU (batches ready while it computes), 0 on CPUs
    (where a worker would take a core from the model)."""
    if num_workers is not None:
        return num_workers
    return 2 if torch.device(device).type == "cuda" else 0


@dataclasses.dataclass(frozen=True)
class FeatureReader:
    """A run's examples as each model reads them: the task's splits and the transfer file,
    encoded by a model_config entry's tokenizer to max_seq_length, cached in cache_dir
    (feature_cache.py)."""

    task: object
    data_dir: str
    max_seq_length: int
    cache_dir: str
    transfer_file: str | None = None

    def split(self, split, entry):
        """The features of a labelled split ('train' or a dev set's name), or of the transfer
        file (split TRANSFER, unlabelled)."""
        return load_features(self.task, self.data_dir, split, entry.tokenizer, entry.vocab_file,
                             self.max_seq_length, self.cache_dir, transfer_file=self.transfer_file)  # fmt: skip

    def dev_sets(self, entry):
        """{dev set: features} of the task's dev sets."""
        return {name: self.split(name, entry) for name in self.task.dev_sets}

    def with_transfer_set(self, features, entry):
        """The training features followed by the transfer file's, as entry's model reads them;
        the features as they are without a transfer file."""
        if not self.transfer_file:
            return features
        return with_transfer_set(features, self.split(TRANSFER, entry))

    def teachers_train(self, teachers):
        """Per enabled teacher, its own encoding of the training examples (transfer set
        included) when it reads another vocabulary than the student's, else None; None when no
        teacher has its own."""
        features = [
            self.with_transfer_set(self.split("train", entry), entry) if entry.own_features else None
            for entry in teachers
        ]
        return features if any(feature is not None for feature in features) else None

    def training_batches(self, student, teachers, batch_size, processes, **loader_options):
        """(the labelled training features as the student reads them, this process's loader of
        training batches: the labelled examples and the transfer file's, batch_size a step of
        this process; batch_loader's other options in loader_options)."""
        with processes.main_first():  # rank 0 builds the feature cache, the others then read it
            labelled = self.split("train", student)
            features = self.with_transfer_set(labelled, student)
            # A teacher with a vocabulary of its own reads the same examples encoded by its tokenizer.
            teacher_features = self.teachers_train(teachers)
        loader = batch_loader(features, batch_size, shuffle=True, num_replicas=processes.world_size,
                              rank=processes.rank, teacher_features=teacher_features, **loader_options)  # fmt: skip
        return labelled, loader

    def teachers_dev_sets(self, teachers, student_dev_sets):
        """Per enabled teacher, the dev sets as it reads them (the student's where it shares its vocabulary)."""
        return [self.dev_sets(entry) if entry.own_features else student_dev_sets for entry in teachers]


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
