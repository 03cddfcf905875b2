"""Encoded features, built once per data file and setting, then mapped from a safetensors cache.

The cache key names everything the features depend on: the data file (absolute path, size,
mtime_ns; a dataset's split: the dataset, its configuration and the split's fingerprint), the
vocabulary's bytes (sha256), do_lower_case, max_seq_length, the task, the split, the label list
and the cache format. It is stored in the file's metadata; a file whose stored
key differs from the current one is rebuilt, never reused.

The features stay as narrow as they are stored (int32 ids, uint8 masks and labels, float32
scores of a regression task) and are
memory-mapped from the cache file, so the processes of one machine (torchrun) share one copy of
them in the page cache; data.FeatureDataset widens each batch to int64 when it makes it.
"""

import hashlib
import json
import logging
import mmap
import os
import struct
import time

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from distillation import atomic_path, file_sha256
from utils_glue import convert_examples_to_features, file_version

logger = logging.getLogger(__name__)

FORMAT_VERSION = "2"
# Stored, and kept in memory, narrow: MNLI's train set at length 128 is 0.3 GB instead of 1.2.
STORAGE_DTYPES = {
    "input_ids": torch.int32,
    "attention_mask": torch.uint8,
    "token_type_ids": torch.uint8,
    "labels": torch.uint8,
}
SCORE_DTYPE = torch.float32  # the labels of a regression task
TRANSFER = "transfer"  # the split of main.py --transfer_file's examples
# Parts of the key that say which version of the data file (or dataset) was encoded. They are
# left out of the file name, so a rewritten data file replaces its old cache instead of orphaning it.
DATA_VERSION_PARTS = ("data_size", "data_mtime_ns", "data_fingerprint")


def storage_dtypes(label_list):
    """How each feature is stored: scores (label_list None) as float32, label indices narrow."""
    if label_list is None:
        return {**STORAGE_DTYPES, "labels": SCORE_DTYPE}
    if len(label_list) > torch.iinfo(STORAGE_DTYPES["labels"]).max + 1:
        return {**STORAGE_DTYPES, "labels": torch.int32}
    return STORAGE_DTYPES


def data_file_of(task, data_dir, split, transfer_file=None):
    """The file a split is read from: the task's, or for TRANSFER the transfer file."""
    return transfer_file if split == TRANSFER else task.data_file(data_dir, split)


def cache_key(task, data_dir, split, tokenizer, vocab_file, max_seq_length, transfer_file=None):
    """The str -> str dict that identifies one set of features."""
    version = file_version(transfer_file) if split == TRANSFER else task.data_version(data_dir, split)
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"{vocab_file}: vocabulary file not found")
    labels = task.label_list
    return {
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "split": split,
        **version,
        "vocab_sha256": file_sha256(vocab_file),
        "do_lower_case": str(getattr(tokenizer, "do_lower_case", None)),
        "max_seq_length": str(max_seq_length),
        "labels": ",".join(labels) if labels is not None else "(regression)",
        "task_record": json.dumps(task.record(), sort_keys=True),  # a custom task's columns too
    }


def cache_file_name(key):
    """<task>-<split>-len<max_seq_length>-<digest of the key without the data version>."""
    identity = {name: value for name, value in key.items() if name not in DATA_VERSION_PARTS}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{key['task']}-{key['split']}-len{key['max_seq_length']}-{digest[:16]}.safetensors"


def load_features(
    task, data_dir, split, tokenizer, vocab_file, max_seq_length, cache_dir, transfer_file=None
):
    """Features of a labelled `split` of the task ('train' or a dev set's name), or of a transfer
    file (split TRANSFER: unlabelled, no labels feature): from cache_dir when still valid, else
    built and cached.

    Returns read-only tensors mapped from the cache file, in storage_dtypes: input_ids,
    attention_mask, token_type_ids [N, max_seq_length] and labels [N].
    """
    key = cache_key(task, data_dir, split, tokenizer, vocab_file, max_seq_length, transfer_file)
    labelled = split != TRANSFER
    dtypes = storage_dtypes(task.label_list)
    if not labelled:
        dtypes = {name: dtype for name, dtype in dtypes.items() if name != "labels"}
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"feature cache directory {cache_dir} cannot be created: {error}") from error
    cache_file = os.path.join(cache_dir, cache_file_name(key))

    if os.path.exists(cache_file):
        features = read_cache(cache_file, key, dtypes)
        if features is not None:
            return features
    if not os.access(cache_dir, os.W_OK):
        raise PermissionError(f"feature cache directory {cache_dir} cannot be written")

    logger.info("Building features for %s", data_file_of(task, data_dir, split, transfer_file))
    start = time.perf_counter()
    examples = task.get_examples(data_dir, split) if labelled else task.read_transfer_file(transfer_file)
    features = convert_examples_to_features(
        examples, task.label_list, max_seq_length, tokenizer, labelled=labelled
    )
    logger.info("Encoded %d examples in %.1f s", len(examples), time.perf_counter() - start)
    write_cache(cache_file, features, key, dtypes)
    mapped = read_cache(cache_file, key, dtypes)
    if mapped is None:  # replaced under our feet: keep the narrowed copy in memory
        return {name: features[name].to(dtype) for name, dtype in dtypes.items()}
    return mapped


def read_cache(cache_file, key, dtypes=STORAGE_DTYPES):
    """The cached features, or None when the file is stale or unreadable (it will be rebuilt)."""
    try:
        with safe_open(cache_file, framework="pt") as f:
            stored_key = f.metadata() or {}
            changed = sorted(
                name for name in key.keys() | stored_key.keys() if key.get(name) != stored_key.get(name)
            )
            if changed:
                details = "; ".join(
                    f"{name}: {stored_key.get(name)!r} -> {key.get(name)!r}" for name in changed
                )
                logger.info("Cached features %s are stale (%s); rebuilding", cache_file, details)
                return None
            logger.info("Loading cached features from %s", cache_file)
        stored = map_tensors(cache_file, dtypes)
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        logger.warning("Cached features %s are unreadable (%s); rebuilding", cache_file, error)
        return None
    num_rows, length = len(stored["input_ids"]), int(key["max_seq_length"])
    shapes = {name: tuple(tensor.shape) for name, tensor in stored.items()}
    expected = {name: (num_rows,) if name == "labels" else (num_rows, length) for name in stored}
    if shapes != expected:
        logger.warning(
            "Cached features %s have shapes %s, expected %s; rebuilding", cache_file, shapes, expected
        )
        return None
    return stored


SAFETENSORS_DTYPES = {"I32": torch.int32, "U8": torch.uint8, "I64": torch.int64, "F32": torch.float32}


def map_tensors(path, names):
    """The named tensors of a safetensors file, memory-mapped rather than read into memory.

    The file's layout: an 8-byte little-endian header length, a JSON header giving each
    tensor's dtype, shape and byte range, then the data. A private (copy-on-write) mapping
    shares the file's pages with every process that maps it and is never written back.
    """
    with open(path, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_size))
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if os.path.getsize(path) else None
    tensors = {}
    for name in names:
        entry = header[name]
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        if end == begin:
            tensors[name] = torch.empty(entry["shape"], dtype=dtype)
            continue
        flat = torch.frombuffer(
            mapped, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=8 + header_size + begin
        )
        tensors[name] = flat.view(entry["shape"])
    return tensors


def write_cache(cache_file, features, key, dtypes=STORAGE_DTYPES):
    """Save narrowed copies of the features with the key as metadata, atomically."""
    stored = {}
    for name, dtype in dtypes.items():
        tensor = features[name]
        if (
            len(tensor)
            and not dtype.is_floating_point
            and (tensor.min() < torch.iinfo(dtype).min or tensor.max() > torch.iinfo(dtype).max)
        ):
            raise ValueError(f"{name} values outside {dtype}'s range cannot be cached")
        stored[name] = tensor.to(dtype).contiguous()
    try:
        with atomic_path(cache_file) as tmp:
            save_file(stored, tmp, metadata=key)
    except OSError as error:
        raise PermissionError(f"feature cache file {cache_file} cannot be written: {error}") from error
