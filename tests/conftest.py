"""Shared pytest setup.

The repository root goes on `sys.path`, so that test modules can `from tests import
reference` however pytest is started (`pytest` or `python -m pytest`). The `rng`
fixture gives every test its own seeded generator, so a test's data do not depend on
which tests ran before it; the global random state a test seeds is put back after it;
Hypothesis draws the same examples on every run.
"""

import pathlib
import sys
import zlib

from hypothesis import settings
import numpy as np
import pytest

_REPO_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests import random_state  # noqa: E402  (needs the path above)

# Property tests draw their examples from a fixed seed and keep no example database,
# so every run checks the same cases.
settings.register_profile("derandomized", derandomize=True, database=None)
settings.load_profile("derandomized")


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's id: reproducible, and the same whether
    the test runs alone or with others."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def restore_global_random_state():
    """Puts back the global seeds a test sets (`tf_keras.utils.set_random_seed`, ...),
    so they do not leak into the tests that run after it."""
    with random_state.restored():
        yield
