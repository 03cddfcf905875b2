"""The tests' fixtures; what they are made of lives in tests/helpers.py."""

import pytest

from tests.helpers import write_bert_config, write_tiny_mnli, write_vocab


@pytest.fixture
def tiny_mnli(tmp_path):
    """The MNLI directory of a small generated corpus."""
    return write_tiny_mnli(tmp_path / "data")


@pytest.fixture
def tiny_vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt")


@pytest.fixture
def tiny_bert_config(tmp_path):
    """A factory: tiny_bert_config(name, **sizes) writes a BERT config json and returns its path."""

    def make(name="bert_config.json", **sizes):
        return write_bert_config(tmp_path / name, **sizes)

    return make
