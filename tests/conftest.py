"""Shared pytest setup: the repository root goes on `sys.path`, so that test modules can
`from tests import reference` however pytest is started (`pytest` or `python -m pytest`)."""

import pathlib
import sys

_REPO_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)
