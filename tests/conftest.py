"""Shared pytest setup.

The repository root goes on `sys.path`, so that test modules can `from tests import
reference` however pytest is started (`pytest` or `python -m pytest`). The `rng`
fixture gives every test its own seeded generator, so a test's data do not depend on
which tests ran before it.
"""

import pathlib
import sys
import zlib

import numpy as np
import pytest

_REPO_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's id: reproducible, and the same whether
    the test runs alone or with others."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
