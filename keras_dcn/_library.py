"""Loads the compiled op library (``libkeras_dcn_ops.so``) when first needed, with
clear errors.

The library is looked for in the environment variable ``KERAS_DCN_OPS_LIBRARY`` (for
example a Bazel build, ``bazel-bin/tf_ops/libkeras_dcn_ops.so``) and otherwise next to
this file, where ``pip install .`` and ``pip install -e .`` put it. It loads only into
TensorFlow of the minor version it was compiled against (``build_info()``); a library
without CUDA kernels runs its ops on the CPU (keras_dcn/_placement.py).

The CPU kernels pick their matrix-product code when the library is first used:
AVX-512 micro-kernels where the CPU has AVX-512 (and bfloat16 ones with AVX512_BF16),
Eigen's products elsewhere. ``KERAS_DCN_MAX_CPU_ISA`` (one of ``CPU_ISAS``) caps the
choice; ``cpu_isa()`` says what is in use.

Importing this module loads the library, which registers its ops (a SavedModel that
calls them needs that). A library that cannot load does not fail the import: ``load()``
raises ``LibraryError`` saying why, ``load_error()`` returns it, and the ops run as
their composite of standard operations (keras_dcn/ops/_implementation.py). ``ops`` is
the loaded module.
"""

import ctypes
import os
import pathlib

import tensorflow as tf

from keras_dcn import _build_info
from keras_dcn import _placement

LIBRARY_ENV = "KERAS_DCN_OPS_LIBRARY"
LIBRARY_NAME = "libkeras_dcn_ops.so"
CPU_ISA_ENV = "KERAS_DCN_MAX_CPU_ISA"
# In the order of tf_ops/cc/kernels/cpu/cpu_gemm.h's CpuGemmIsa.
CPU_ISAS = ("generic", "avx512", "avx512_bf16")

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
# Present only in a source checkout (editable installs and development).
_SOURCE_DIR = _PACKAGE_DIR.parent / "tf_ops"

_BUILD_HINT = (
    "Build it from the source checkout with `pip install -e .` (or `make install`), "
    f"or point {LIBRARY_ENV} at a built {LIBRARY_NAME} "
    "(`bazel build //tf_ops/...` makes bazel-bin/tf_ops/" + LIBRARY_NAME + ")."
)


class LibraryError(ImportError):
    """The op library is missing, older than its sources, or does not load."""


def library_path():
    """Path of the op library that will be loaded."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        return pathlib.Path(override).expanduser().resolve()
    return _PACKAGE_DIR / LIBRARY_NAME


def build_info():
    """What the op library was built against (a ``_build_info.BuildInfo``: TensorFlow
    version, CUDA kernels, x86 extensions), or None for a library that does not say."""
    return _build_info.read(library_path())


def _newest_source():
    """(mtime, path) of the newest C++/CUDA source in a source checkout, or None."""
    if not _SOURCE_DIR.is_dir():
        return None
    sources = [
        p for p in _SOURCE_DIR.rglob("*") if p.suffix in (".cc", ".h", ".cuh", ".cu")
    ]
    if not sources:
        return None
    newest = max(sources, key=lambda p: p.stat().st_mtime)
    return newest.stat().st_mtime, newest


def _check_cpu_isa_cap():
    cap = os.environ.get(CPU_ISA_ENV)
    if cap and cap not in CPU_ISAS:
        raise ValueError(
            f"{CPU_ISA_ENV}={cap!r} is not an instruction set keras_dcn knows; expected "
            f"one of {', '.join(CPU_ISAS)} (or unset, for the best this CPU has)."
        )


def cpu_isa():
    """The instruction set of the CPU kernels in this process: ``"generic"`` (Eigen),
    ``"avx512"`` (AVX-512 F/BW/VL: float micro-kernels and vector loops over
    channels) or ``"avx512_bf16"`` (bfloat16 micro-kernels too), capped by
    ``KERAS_DCN_MAX_CPU_ISA``."""
    return CPU_ISAS[ctypes.CDLL(str(library_path())).keras_dcn_cpu_gemm_isa()]


def _check_tensorflow_version(path, info):
    """Refuses a library built against another minor version of TensorFlow."""
    if info is None or info.tensorflow == "unknown":
        return
    built = _build_info.minor_version(info.tensorflow)
    if built != _build_info.minor_version(tf.__version__):
        series = f"{built[0]}.{built[1]}.x"
        raise LibraryError(
            f"keras_dcn's op library {path} was built against TensorFlow "
            f"{info.tensorflow} and works only with TensorFlow {series}, but this "
            f"process runs TensorFlow {tf.__version__}. Install tensorflow {series}, or "
            f"a keras-dcn built against TensorFlow {tf.__version__}. {_BUILD_HINT}"
        )


def _load():
    _check_cpu_isa_cap()
    path = library_path()
    if not path.is_file():
        raise LibraryError(f"keras_dcn's op library was not found at {path}. {_BUILD_HINT}")
    newest = _newest_source()
    if newest is not None and newest[0] > path.stat().st_mtime:
        raise LibraryError(
            f"keras_dcn's op library {path} is older than its source {newest[1]}; "
            f"it is stale. Rebuild it. {_BUILD_HINT}"
        )
    info = _build_info.read(path)
    _check_tensorflow_version(path, info)
    try:
        module = tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as error:
        raise LibraryError(
            f"keras_dcn's op library {path} does not load into TensorFlow "
            f"{tf.__version__} (built against another TensorFlow?): {error}. "
            f"Rebuild it. {_BUILD_HINT}"
        ) from error
    if info is not None and not info.cuda:
        return _placement.CpuOnlyOps(module, path)
    return module


_loaded = {}


def load():
    """The op library's functions (loaded on the first call, then reused); raises
    ``LibraryError`` saying why it cannot load, on every call."""
    if "module" not in _loaded:
        try:
            _loaded["module"] = _load()
        except LibraryError as error:
            _loaded["module"] = error
    if isinstance(_loaded["module"], Exception):
        raise _loaded["module"]
    return _loaded["module"]


def load_error():
    """Why the op library cannot load (the exception ``load()`` raises), or None."""
    try:
        load()
    except LibraryError as error:
        return error
    return None


def __getattr__(name):
    if name == "ops":
        return load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


load_error()  # registers the ops now, or keeps why it cannot
