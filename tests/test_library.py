"""The op library loader: a missing, stale or foreign library, or one built against
another TensorFlow, fails to load with a message that says how to build it; `import
keras_dcn` still works, and the ops then run as their composite."""

import functools
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from keras_dcn import _build_info
from keras_dcn import _library

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_LOAD = "import keras_dcn; from keras_dcn import _library; _library.load()"


def _load_library(library, code=_LOAD):
    """Runs `code` (by default: import keras_dcn, then load the op library) in a
    process whose library is `library`."""
    env = dict(os.environ, **{_library.LIBRARY_ENV: str(library)})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_missing_library_says_how_to_build(tmp_path):
    result = _load_library(tmp_path / "nowhere" / _library.LIBRARY_NAME)
    assert result.returncode != 0
    assert "LibraryError" in result.stderr
    assert "was not found" in result.stderr
    assert "pip install -e ." in result.stderr


_WITHOUT_LIBRARY = """
import json
import warnings
import tensorflow as tf
from keras_dcn import _library, ops
x, kernel, offsets = tf.ones((1, 4, 4, 2)), tf.ones((3, 3, 2, 3)), tf.zeros((1, 4, 4, 18))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    outputs = [ops.deform_conv2d(x, offsets, kernel, padding="same") for _ in range(2)]
print("warnings:", json.dumps([str(w.message) for w in caught
                               if w.category is RuntimeWarning]))
regular = tf.nn.conv2d(x, kernel, 1, "SAME")
print("error:", max(float(tf.reduce_max(tf.abs(y - regular))) for y in outputs))
try:
    ops.deform_conv2d(x, offsets, kernel, padding="same", implementation="custom")
except _library.LibraryError as error:
    print("custom:", error)
"""


@pytest.mark.slow
def test_without_the_library_auto_runs_the_composite_and_custom_refuses(tmp_path):
    """No library: the op runs as its composite (zero offsets and no mask: a regular
    convolution) with one warning that says why; "custom" raises the loader's error."""
    result = _load_library(tmp_path / "nowhere" / _library.LIBRARY_NAME, _WITHOUT_LIBRARY)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines()
                 if line.startswith(("warnings", "error", "custom")))
    warned = json.loads(lines["warnings"])
    assert len(warned) == 1 and "cannot load" in warned[0] and "was not found" in warned[0]
    assert float(lines["error"]) < 1e-5
    assert "was not found" in lines["custom"]


@pytest.mark.slow
def test_stale_library_is_refused(tmp_path):
    stale = tmp_path / _library.LIBRARY_NAME
    shutil.copy(_library.library_path(), stale)
    os.utime(stale, (0, 0))  # older than every source file
    result = _load_library(stale)
    assert result.returncode != 0
    assert "stale" in result.stderr
    assert "make install" in result.stderr


@pytest.mark.slow
def test_file_that_is_not_a_library_is_refused(tmp_path):
    broken = tmp_path / _library.LIBRARY_NAME
    broken.write_bytes(b"not an ELF file")
    result = _load_library(broken)
    assert result.returncode != 0
    assert "does not load" in result.stderr


def test_library_says_what_it_was_built_against():
    info = _library.build_info()
    assert info is not None, f"{_library.library_path()} carries no build information"
    assert info.tensorflow == tf.__version__
    assert "avx" in info.cpu or platform.machine() != "x86_64"


@pytest.mark.slow
def test_library_built_against_another_tensorflow_is_refused(tmp_path):
    """The build information names TensorFlow 1.x instead of 2.x (same length): the
    import fails before loading, naming both versions."""
    built = "1" + tf.__version__[1:]
    data = _library.library_path().read_bytes()
    marker = f"tensorflow={tf.__version__};".encode()
    assert data.count(marker) == 1
    foreign = tmp_path / _library.LIBRARY_NAME
    foreign.write_bytes(data.replace(marker, f"tensorflow={built};".encode()))
    assert _build_info.read(foreign).tensorflow == built
    result = _load_library(foreign)
    assert result.returncode != 0
    assert "LibraryError" in result.stderr
    assert f"built against TensorFlow {built}" in result.stderr
    assert f"this process runs TensorFlow {tf.__version__}" in result.stderr


def test_minor_version_of_release_and_nightly_versions():
    assert _build_info.minor_version("2.20.0") == (2, 20)
    assert _build_info.minor_version("2.21.0-dev20250101") == (2, 21)
    assert _build_info.minor_version("2.20.0rc1") == (2, 20)


def test_environment_variable_selects_the_library(monkeypatch, tmp_path):
    monkeypatch.setenv(_library.LIBRARY_ENV, str(tmp_path / "lib.so"))
    assert _library.library_path() == (tmp_path / "lib.so").resolve()
    monkeypatch.delenv(_library.LIBRARY_ENV)
    assert _library.library_path().parent.name == "keras_dcn"


@functools.cache
def _cpu_isa_in_process(cap):
    """cpu_isa() in a process with KERAS_DCN_MAX_CPU_ISA set to `cap` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != _library.CPU_ISA_ENV}
    if cap is not None:
        env[_library.CPU_ISA_ENV] = cap
    return subprocess.run(
        [sys.executable, "-c", "from keras_dcn import _library; print(_library.cpu_isa())"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cpu_isa_is_one_of_the_known():
    assert _library.cpu_isa() in _library.CPU_ISAS


@pytest.mark.slow
@pytest.mark.parametrize("cap", _library.CPU_ISAS)
def test_cpu_isa_cap_is_respected(cap):
    """The cap lowers the choice to at most itself, and never raises it above what the
    uncapped process uses."""
    capped, uncapped = _cpu_isa_in_process(cap), _cpu_isa_in_process(None)
    for result in (capped, uncapped):
        assert result.returncode == 0, result.stderr[-2000:]
    chosen, best = (_library.CPU_ISAS.index(r.stdout.split()[-1]) for r in (capped, uncapped))
    assert chosen == min(_library.CPU_ISAS.index(cap), best)


@pytest.mark.slow
def test_unknown_cpu_isa_cap_is_refused():
    result = subprocess.run(
        [sys.executable, "-c", _LOAD], cwd=REPO, capture_output=True,
        text=True, timeout=300, env=dict(os.environ, **{_library.CPU_ISA_ENV: "avx9"}))
    assert result.returncode != 0
    assert "ValueError" in result.stderr
    assert "KERAS_DCN_MAX_CPU_ISA='avx9'" in result.stderr
    assert "generic, avx512, avx512_bf16" in result.stderr
