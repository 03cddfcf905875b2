"""The tests draw nothing from an unseeded source. The global generators are put in a fixed
state before every fixture and test (tests/conftest.py), so a model built without a seed is the
same on every run; what that cannot reach is a generator of its own seeded from the system
(random.Random(), numpy's default_rng(), a seed from the clock or the process id). Those are
refused here, but for the kill points of the interrupted-run tests, which vary on purpose (a
kill must be survived at any moment, and its timing varies anyway): their lines say so."""

import os
import re

import pytest

from tests.helpers import REPO

UNSEEDED = re.compile(
    r"\bRandom\(\s*\)|default_rng\(\s*\)|RandomState\(\s*\)|\.seed\(\s*\)|SystemRandom|urandom"
    r"|(Random|seed|default_rng|RandomState)\([^)]*(getpid|time\(|time_ns|uuid)"
)
ON_PURPOSE = "# varies on purpose"


def test_no_test_draws_from_an_unseeded_generator():
    # The pattern catches what it is for.
    for line in [
        "rng = random.Random()",
        "np.random.default_rng()",
        "random.seed()",
        "torch.seed()",
        "random.Random(os.getpid())",
        "np.random.seed(int(time.time()))",
    ]:
        assert UNSEEDED.search(line), line
    assert not UNSEEDED.search("random.Random(7)") and not UNSEEDED.search("torch.manual_seed(0)")
    found = []
    for folder, _, names in os.walk(os.path.join(REPO, "tests")):
        for name in sorted(names):
            if not name.endswith(".py") or name == os.path.basename(__file__):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if UNSEEDED.search(line) and ON_PURPOSE not in line:
                        found.append(f"{os.path.relpath(path, REPO)}:{number}: {line.strip()}")
    assert not found, "unseeded random sources in the tests:\n" + "\n".join(found)


def drawn_then_seeded():
    """(3 numbers drawn from each global generator now, the same drawn after seeding them)."""
    import random

    import numpy as np
    import torch

    def draw():
        return [random.random() for _ in range(3)], np.random.rand(3).tolist(), torch.rand(3).tolist()

    first = draw()
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    return first, draw()


@pytest.fixture(scope="module")
def drawn_in_a_fixture():
    return drawn_then_seeded()


def test_fixtures_and_tests_start_from_the_fixed_generator_state(drawn_in_a_fixture):
    first, seeded = drawn_in_a_fixture
    assert first == seeded
    first, seeded = drawn_then_seeded()
    assert first == seeded
