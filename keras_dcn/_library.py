"""Loads the compiled op library (``libkeras_dcn_ops.so``) once, with clear errors.

The library is looked for in the environment variable ``KERAS_DCN_OPS_LIBRARY`` (for
example a Bazel build, ``bazel-bin/tf_ops/libkeras_dcn_ops.so``) and otherwise next to
this file, where ``pip install .`` and ``pip install -e .`` put it.
"""

import os
import pathlib

import tensorflow as tf

LIBRARY_ENV = "KERAS_DCN_OPS_LIBRARY"
LIBRARY_NAME = "libkeras_dcn_ops.so"

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


def _load():
    path = library_path()
    if not path.is_file():
        raise LibraryError(f"keras_dcn's op library was not found at {path}. {_BUILD_HINT}")
    newest = _newest_source()
    if newest is not None and newest[0] > path.stat().st_mtime:
        raise LibraryError(
            f"keras_dcn's op library {path} is older than its source {newest[1]}; "
            f"it is stale. Rebuild it. {_BUILD_HINT}"
        )
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as error:
        raise LibraryError(
            f"keras_dcn's op library {path} does not load into TensorFlow "
            f"{tf.__version__} (built against another TensorFlow?): {error}. "
            f"Rebuild it. {_BUILD_HINT}"
        ) from error


ops = _load()
