"""Saving and restoring the global random state that tests may seed: Python's
`random`, NumPy's legacy global generator and TensorFlow's global seed (what
`tf_keras.utils.set_random_seed` and `keras.utils.set_random_seed` set)."""

import contextlib
import random
import sys

import numpy as np


@contextlib.contextmanager
def restored():
    """Runs the block, then puts the global random state back as it was. TensorFlow is
    only touched when it has been imported."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    tf_seed = _tf_global_seed()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if _tf_global_seed() != tf_seed:
            import tensorflow as tf
            tf.random.set_seed(tf_seed)


def _tf_global_seed():
    """TensorFlow's global seed (None when unset or TensorFlow is not loaded)."""
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.eager import context
    return context.global_seed()
