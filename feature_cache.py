"""Encoded MNLI features, built once per data file and setting, then loaded from a safetensors cache.

The cache key names everything the features depend on: the data file (absolute path, size,
mtime_ns), the vocabulary's bytes (sha256), do_lower_case, max_seq_length, the task, the split,
the label list and the cache format. It is stored in the file's metadata; a file whose stored
key differs from the current one is rebuilt, never reused.
"""
import hashlib
import json
import logging
import os
import time

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from distillation.io import atomic_path, file_sha256
from utils_glue import convert_examples_to_features

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
# Stored narrow (a quarter of int64's disk space for MNLI's train set), returned as int64.
STORAGE_DTYPES = {"input_ids": torch.int32, "attention_mask": torch.uint8,
                  "token_type_ids": torch.uint8, "labels": torch.uint8}
# Parts of the key that say which version of the data file was encoded. They are left out of
# the file name, so a rewritten data file replaces its old cache instead of orphaning it.
DATA_VERSION_PARTS = ("data_size", "data_mtime_ns")


def cache_key(processor, data_dir, split, tokenizer, vocab_file, max_seq_length, label_list):
    """The str -> str dict that identifies one set of features."""
    data_file = os.path.abspath(processor.data_file(data_dir, split))
    try:
        stat = os.stat(data_file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{data_file}: MNLI data file not found") from None
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"{vocab_file}: vocabulary file not found")
    return {"format_version": FORMAT_VERSION, "task": processor.task_name, "split": split,
            "data_file": data_file, "data_size": str(stat.st_size),
            "data_mtime_ns": str(stat.st_mtime_ns), "vocab_sha256": file_sha256(vocab_file),
            "do_lower_case": str(getattr(tokenizer, "do_lower_case", None)),
            "max_seq_length": str(max_seq_length), "labels": ",".join(label_list)}


def cache_file_name(key):
    """<task>-<split>-len<max_seq_length>-<digest of the key without the data version>."""
    identity = {name: value for name, value in key.items() if name not in DATA_VERSION_PARTS}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{key['task']}-{key['split']}-len{key['max_seq_length']}-{digest[:16]}.safetensors"


def load_features(processor, data_dir, split, tokenizer, vocab_file, max_seq_length, cache_dir,
                  label_list):
    """Features of `split` ('train' or 'dev'): from cache_dir when still valid, else built and cached.

    Returns int64 tensors: input_ids, attention_mask, token_type_ids [N, max_seq_length] and
    labels [N].
    """
    key = cache_key(processor, data_dir, split, tokenizer, vocab_file, max_seq_length, label_list)
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"feature cache directory {cache_dir} cannot be created: {error}") \
            from error
    cache_file = os.path.join(cache_dir, cache_file_name(key))

    if os.path.exists(cache_file):
        features = read_cache(cache_file, key)
        if features is not None:
            return features
    if not os.access(cache_dir, os.W_OK):
        raise PermissionError(f"feature cache directory {cache_dir} cannot be written")

    logger.info("Building features for %s", key["data_file"])
    start = time.perf_counter()
    examples = processor.get_examples(data_dir, split)
    features = convert_examples_to_features(examples, label_list, max_seq_length, tokenizer)
    logger.info("Encoded %d pairs in %.1f s", len(examples), time.perf_counter() - start)
    write_cache(cache_file, features, key)
    return features


def read_cache(cache_file, key):
    """The cached features, or None when the file is stale or unreadable (it will be rebuilt)."""
    try:
        with safe_open(cache_file, framework="pt") as f:
            stored_key = f.metadata() or {}
            changed = sorted(name for name in key.keys() | stored_key.keys()
                             if key.get(name) != stored_key.get(name))
            if changed:
                details = "; ".join(f"{name}: {stored_key.get(name)!r} -> {key.get(name)!r}"
                                    for name in changed)
                logger.info("Cached features %s are stale (%s); rebuilding", cache_file, details)
                return None
            logger.info("Loading cached features from %s", cache_file)
            stored = {name: f.get_tensor(name) for name in STORAGE_DTYPES}
    except (SafetensorError, OSError) as error:
        logger.warning("Cached features %s are unreadable (%s); rebuilding", cache_file, error)
        return None
    num_rows, length = len(stored["labels"]), int(key["max_seq_length"])
    shapes = {name: tuple(tensor.shape) for name, tensor in stored.items()}
    expected = {name: (num_rows,) if name == "labels" else (num_rows, length) for name in stored}
    if shapes != expected:
        logger.warning("Cached features %s have shapes %s, expected %s; rebuilding",
                       cache_file, shapes, expected)
        return None
    return {name: tensor.to(torch.int64) for name, tensor in stored.items()}


def write_cache(cache_file, features, key):
    """Save narrowed copies of the features with the key as metadata, atomically."""
    stored = {}
    for name, dtype in STORAGE_DTYPES.items():
        tensor = features[name]
        if len(tensor) and (tensor.min() < torch.iinfo(dtype).min
                            or tensor.max() > torch.iinfo(dtype).max):
            raise ValueError(f"{name} values outside {dtype}'s range cannot be cached")
        stored[name] = tensor.to(dtype).contiguous()
    try:
        with atomic_path(cache_file) as tmp:
            save_file(stored, tmp, metadata=key)
    except OSError as error:
        raise PermissionError(f"feature cache file {cache_file} cannot be written: {error}") \
            from error
