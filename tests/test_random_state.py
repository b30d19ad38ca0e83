"""tests.random_state: a block that seeds Python's, NumPy's and TensorFlow's global
generators leaves them as it found them."""

import random

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context
import tf_keras

from tests import random_state


def test_seeds_set_in_the_block_are_undone():
    tf.random.set_seed(None)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with random_state.restored():
        tf_keras.utils.set_random_seed(123)
        assert context.global_seed() == 123
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state[1])
    assert context.global_seed() is None


def test_a_seed_that_was_set_is_set_again():
    tf.random.set_seed(7)
    with random_state.restored():
        tf.random.set_seed(8)
    assert context.global_seed() == 7
