"""The tests' fixtures; what they are made of lives in tests/helpers.py."""

import random

import numpy as np
import pytest
import torch

from tests.helpers import write_bert_config, write_tiny_mnli, write_vocab


def seed_global_generators():
    """Python's, numpy's and torch's global generators in one fixed state."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    """Every fixture and every test starts from the same generator state: a model or tensor
    drawn without a seed of its own is the same on every run, whatever ran before it or not
    (tests/test_seeds.py checks the generators that this cannot reach)."""
    seed_global_generators()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    seed_global_generators()


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
