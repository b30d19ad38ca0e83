"""Which implementation of an op runs: the compiled kernels or the composite.

`implementation` is one of `IMPLEMENTATIONS`:
  * "custom": the compiled kernels (`keras_dcn._library`); raises `LibraryError`
    when the library cannot load.
  * "composite": standard TensorFlow operations only
    (`keras_dcn.ops._deform_conv_composite`, `_deform_roi_pool_composite`).
  * "auto": the composite inside an XLA compilation (`jit_compile=True`), which
    cannot run custom kernels, and where the library cannot load (with one warning
    naming why); the compiled kernels otherwise.

Inside `standard_ops_only()` every op (or those it names) is the composite, whatever
its implementation says: a graph traced there (a SavedModel export, a LiteRT
conversion) holds standard TensorFlow ops only.
"""

import contextlib
import threading
import warnings

import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from keras_dcn import _library

IMPLEMENTATIONS = ("auto", "custom", "composite")
OPS = ("deform_conv2d", "deform_roi_pool")
_warned = []
_scope = threading.local()


@contextlib.contextmanager
def standard_ops_only(ops=OPS):
    """Inside, the ops named in `ops` (by default both) run as their composite of
    standard TensorFlow ops, so that a graph traced here (`model.export`,
    `tf.saved_model.save`, a LiteRT conversion) runs where keras_dcn's library is not
    loaded: stock TF Serving, LiteRT, another machine.

        with keras_dcn.ops.standard_ops_only():
            model.export("portable_model")
    """
    unknown = sorted(set(ops) - set(OPS))
    if unknown or isinstance(ops, str):
        raise ValueError(f"ops must be a sequence of names out of {OPS}, got {ops!r}")
    outer = getattr(_scope, "ops", frozenset())
    _scope.ops = outer | frozenset(ops)
    try:
        yield
    finally:
        _scope.ops = outer


def check(implementation):
    """`implementation` when it is one of `IMPLEMENTATIONS`, else a ValueError."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {', '.join(map(repr, IMPLEMENTATIONS))}, "
            f"got {implementation!r}")
    return implementation


def in_xla_compilation():
    """Whether the ops being made are compiled with XLA (`jit_compile=True`)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def supports_xla(implementation):
    """Whether a layer of `implementation` should let Keras compile it with XLA: yes
    for the composite, no for the custom kernels, and for "auto" yes unless the CUDA
    kernels can serve a GPU that TensorFlow sees (Keras' `jit_compile="auto"` would
    otherwise trade them for the composite)."""
    if check(implementation) != "auto":
        return implementation == "composite"
    info = _library.build_info() if _library.load_error() is None else None
    return not (info is not None and info.cuda and tf.config.list_physical_devices("GPU"))


def resolve(implementation, op):
    """'custom' or 'composite': what `implementation` of `op` (one of `OPS`) runs as
    here and now."""
    check(implementation)
    if op in getattr(_scope, "ops", ()):
        return "composite"
    if implementation == "custom":
        _library.load()
        return "custom"
    if implementation == "composite" or in_xla_compilation():
        return "composite"
    error = _library.load_error()
    if error is None:
        return "custom"
    if not _warned:
        _warned.append(error)
        warnings.warn(
            f"keras_dcn runs its ops as compositions of standard TensorFlow ops, slower "
            f"than its compiled kernels, because the op library cannot load: {error}",
            RuntimeWarning, stacklevel=3)
    return "composite"
