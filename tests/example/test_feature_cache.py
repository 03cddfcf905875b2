"""The feature cache: built once, reused while its key holds, rebuilt when anything changes."""

import json
import logging
import os

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertTokenizer

from pipeline import feature_cache
from pipeline.feature_cache import STORAGE_DTYPES, cache_file_name, cache_key, load_features
from tests.helpers import LABELS, WORDS, mismatched_size, write_tiny_mnli, write_vocab
from utils_glue import TASKS, convert_examples_to_features

MNLI = TASKS["mnli"]

MAX_LEN = 16


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Data, vocab, tokenizer, cache dir and a counter of feature builds."""
    builds = []

    def counting_convert(examples, *args, **kwargs):
        builds.append(len(examples))
        return convert_examples_to_features(examples, *args, **kwargs)

    monkeypatch.setattr(feature_cache, "convert_examples_to_features", counting_convert)
    vocab = write_vocab(tmp_path / "vocab.txt")
    return {
        "data_dir": write_tiny_mnli(tmp_path / "data", n_train=20, n_dev=6),
        "vocab": vocab,
        "tokenizer": BertTokenizer(vocab=str(vocab), do_lower_case=True),
        "cache_dir": tmp_path / "cache",
        "builds": builds,
    }


def load(setup, split="train", max_seq_length=MAX_LEN, tokenizer=None, vocab=None):
    return load_features(
        MNLI,
        setup["data_dir"],
        split,
        tokenizer or setup["tokenizer"],
        str(vocab or setup["vocab"]),
        max_seq_length,
        str(setup["cache_dir"]),
    )


def cache_files(setup):
    return sorted(os.listdir(setup["cache_dir"]))


def assert_same(features, other):
    """Equal values, both kept in the narrow storage dtypes."""
    assert features.keys() == other.keys()
    for key in features:
        assert features[key].dtype == other[key].dtype == STORAGE_DTYPES[key]
        assert torch.equal(features[key].long(), other[key].long()), key


def test_second_call_loads_the_cache(setup, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.feature_cache"):
        built = load(setup)
        assert "Building features for " + str(setup["data_dir"] / "train.tsv") in caplog.text
        loaded = load(setup)
    assert setup["builds"] == [20]
    assert "Loading cached features from " + str(setup["cache_dir"]) in caplog.text
    assert_same(built, loaded)
    direct = convert_examples_to_features(
        MNLI.get_train_examples(setup["data_dir"]), LABELS, MAX_LEN, setup["tokenizer"]
    )
    assert all(torch.equal(direct[key], loaded[key].long()) for key in direct)
    assert len(cache_files(setup)) == 1  # and no temporary file left behind


def test_the_features_are_mapped_from_the_cache_file_not_copied(setup):
    """Processes on one machine share the file's pages: each tensor lies inside a mapping of
    the cache file (Linux's /proc/self/maps lists the mappings and their files)."""
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc/self/maps (Linux)")
    load(setup)
    loaded = load(setup)
    [name] = cache_files(setup)
    path = os.path.realpath(setup["cache_dir"] / name)
    with open("/proc/self/maps") as f:
        ranges = [
            tuple(int(x, 16) for x in line.split()[0].split("-"))
            for line in f
            if line.rstrip().endswith(path)
        ]
    assert ranges, "the cache file is not mapped"
    for key, tensor in loaded.items():
        start, end = tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * tensor.element_size()
        assert any(low <= start and end <= high for low, high in ranges), key


def test_cache_file_is_plain_safetensors_with_the_key(setup):
    load(setup)
    [name] = cache_files(setup)
    data = (setup["cache_dir"] / name).read_bytes()
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    # The file is the JSON header and the raw tensor bytes, nothing else: no room for a pickle.
    tensor_bytes = sum(
        end - start
        for entry in (v for k, v in header.items() if k != "__metadata__")
        for start, end in [entry["data_offsets"]]
    )
    assert len(data) == 8 + header_size + tensor_bytes
    assert header["input_ids"]["shape"] == [20, MAX_LEN]
    metadata = header["__metadata__"]
    assert metadata == cache_key(
        MNLI, setup["data_dir"], "train", setup["tokenizer"], str(setup["vocab"]), MAX_LEN
    )
    assert metadata["data_file"] == str((setup["data_dir"] / "train.tsv").resolve())
    assert metadata["max_seq_length"] == str(MAX_LEN) and metadata["do_lower_case"] == "True"
    assert name == cache_file_name(metadata)


def test_touched_data_file_is_rebuilt_in_place(setup, caplog):
    load(setup)
    train = setup["data_dir"] / "train.tsv"
    stat = os.stat(train)
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with caplog.at_level(logging.INFO, logger="pipeline.feature_cache"):
        load(setup)
    assert setup["builds"] == [20, 20]
    assert "data_mtime_ns: " in caplog.text and "rebuilding" in caplog.text
    assert len(cache_files(setup)) == 1  # the stale file was replaced, not left beside the new one

    lines = train.read_text().splitlines()
    train.write_text("\n".join(lines + [lines[1].replace("1000", "9999", 1)]) + "\n")
    features = load(setup)
    assert setup["builds"] == [20, 20, 21] and features["labels"].shape == (21,)


def test_other_vocab_length_or_casing_is_rebuilt(setup, tmp_path):
    first = load(setup)
    reversed_vocab = write_vocab(tmp_path / "vocab2.txt", words=list(reversed(WORDS)))
    other_tokens = BertTokenizer(vocab=str(reversed_vocab), do_lower_case=True)
    second = load(setup, tokenizer=other_tokens, vocab=reversed_vocab)
    assert not torch.equal(first["input_ids"], second["input_ids"])
    third = load(setup, max_seq_length=MAX_LEN + 4)
    assert third["input_ids"].shape == (20, MAX_LEN + 4)
    cased = BertTokenizer(vocab=str(setup["vocab"]), do_lower_case=False)
    load(setup, tokenizer=cased)
    assert setup["builds"] == [20] * 4
    assert len(cache_files(setup)) == 4
    assert_same(first, load(setup))  # the first cache is still there and valid
    assert setup["builds"] == [20] * 4


def test_splits_and_tasks_have_their_own_files(setup):
    matched_dev = load(setup, split="mnli")
    mismatched_dev = load(setup, split="mnli-mm")
    assert setup["builds"] == [6, mismatched_size(6)]  # dev_mismatched is the smaller
    assert not torch.equal(matched_dev["input_ids"], mismatched_dev["input_ids"])
    load(setup, split="train")
    assert len(cache_files(setup)) == 3


def test_truncated_cache_is_rebuilt_with_a_warning(setup, caplog):
    # A copy: the loaded tensors map the very file that is damaged in place below (the cache
    # itself is only ever replaced by a rename, which leaves a mapped old file intact).
    built = {key: tensor.clone() for key, tensor in load(setup).items()}
    [name] = cache_files(setup)
    path = setup["cache_dir"] / name
    path.write_bytes(path.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING, logger="pipeline.feature_cache"):
        rebuilt = load(setup)
    assert "unreadable" in caplog.text and name in caplog.text
    assert setup["builds"] == [20, 20]
    assert_same(built, rebuilt)
    assert_same(built, load(setup))
    assert setup["builds"] == [20, 20]


def test_cache_with_another_key_is_never_reused(setup, caplog):
    load(setup)
    [name] = cache_files(setup)
    path = setup["cache_dir"] / name
    key = cache_key(MNLI, setup["data_dir"], "train", setup["tokenizer"], str(setup["vocab"]), MAX_LEN)
    fake = {
        name: torch.zeros(20, MAX_LEN, dtype=torch.uint8) for name in ("attention_mask", "token_type_ids")
    }
    fake.update(
        input_ids=torch.zeros(20, MAX_LEN, dtype=torch.int32), labels=torch.zeros(20, dtype=torch.uint8)
    )
    save_file(fake, str(path), metadata={**key, "format_version": "0"})
    with caplog.at_level(logging.INFO, logger="pipeline.feature_cache"):
        features = load(setup)
    assert "format_version: '0' -> '2'" in caplog.text
    assert setup["builds"] == [20, 20]
    assert features["input_ids"].count_nonzero() > 0


def test_cache_with_wrong_shapes_is_rebuilt(setup):
    load(setup)
    [name] = cache_files(setup)
    key = cache_key(MNLI, setup["data_dir"], "train", setup["tokenizer"], str(setup["vocab"]), MAX_LEN)
    wrong = {
        "input_ids": torch.zeros(20, MAX_LEN - 1, dtype=torch.int32),
        "attention_mask": torch.zeros(20, MAX_LEN, dtype=torch.uint8),
        "token_type_ids": torch.zeros(20, MAX_LEN, dtype=torch.uint8),
        "labels": torch.zeros(20, dtype=torch.uint8),
    }
    save_file(wrong, str(setup["cache_dir"] / name), metadata=key)
    assert load(setup)["input_ids"].shape == (20, MAX_LEN)
    assert setup["builds"] == [20, 20]


def test_unwritable_cache_dir_is_named(setup, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    setup["cache_dir"] = blocker / "cache"
    with pytest.raises(PermissionError, match="feature cache directory .*not_a_dir/cache"):
        load(setup)


def test_missing_data_file(setup):
    os.remove(setup["data_dir"] / "dev_mismatched.tsv")
    with pytest.raises(FileNotFoundError, match=r"dev_mismatched\.tsv: data file not found"):
        load(setup, split="mnli-mm")
