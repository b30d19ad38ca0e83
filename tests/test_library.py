"""The op library loader: a missing, stale or foreign library fails `import keras_dcn`
with a message that says how to build it."""

import os
import shutil
import subprocess
import sys

import pytest

from keras_dcn import _library

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_keras_dcn(library):
    env = dict(os.environ, **{_library.LIBRARY_ENV: str(library)})
    return subprocess.run(
        [sys.executable, "-c", "import keras_dcn"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300)


def test_missing_library_says_how_to_build(tmp_path):
    result = _import_keras_dcn(tmp_path / "nowhere" / _library.LIBRARY_NAME)
    assert result.returncode != 0
    assert "LibraryError" in result.stderr
    assert "was not found" in result.stderr
    assert "pip install -e ." in result.stderr


def test_stale_library_is_refused(tmp_path):
    stale = tmp_path / _library.LIBRARY_NAME
    shutil.copy(_library.library_path(), stale)
    os.utime(stale, (0, 0))  # older than every source file
    result = _import_keras_dcn(stale)
    assert result.returncode != 0
    assert "stale" in result.stderr
    assert "make install" in result.stderr


def test_file_that_is_not_a_library_is_refused(tmp_path):
    broken = tmp_path / _library.LIBRARY_NAME
    broken.write_bytes(b"not an ELF file")
    result = _import_keras_dcn(broken)
    assert result.returncode != 0
    assert "does not load" in result.stderr


def test_environment_variable_selects_the_library(monkeypatch, tmp_path):
    monkeypatch.setenv(_library.LIBRARY_ENV, str(tmp_path / "lib.so"))
    assert _library.library_path() == (tmp_path / "lib.so").resolve()
    monkeypatch.delenv(_library.LIBRARY_ENV)
    assert _library.library_path().parent.name == "keras_dcn"
