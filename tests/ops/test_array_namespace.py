"""keras_dcn.ops._array_namespace: the TensorFlow namespace the composites compute with
(dimensions static where known, rows taken by index, sizes cast only when dynamic)."""

import numpy as np
import tensorflow as tf

from keras_dcn.ops._array_namespace import TENSORFLOW as xp


def test_dims_are_static_where_known_and_tensors_where_not():
    seen = []

    @tf.function(input_signature=[tf.TensorSpec([None, 3, None], tf.float32)])
    def dims(x):
        seen.append(xp.dims(x))
        return tf.stack([tf.cast(d, tf.int32) for d in seen[-1]])

    np.testing.assert_array_equal(dims(tf.zeros((2, 3, 5))), [2, 3, 5])
    first, middle, last = seen[0]
    assert middle == 3 and tf.is_tensor(first) and tf.is_tensor(last)
    assert xp.dims(tf.zeros((4, 1))) == [4, 1]


def test_take_reads_rows_for_indices_of_any_shape():
    table = tf.constant(np.arange(12.0).reshape(4, 3))
    indices = tf.constant([[3, 0], [1, 1]], tf.int64)
    np.testing.assert_array_equal(xp.take(table, indices),
                                  np.arange(12.0).reshape(4, 3)[[[3, 0], [1, 1]]])


def test_size_as_casts_only_dynamic_sizes():
    assert xp.size_as(7, tf.float32) == 7
    size = xp.size_as(tf.constant(7), tf.float32)
    assert size.dtype == tf.float32 and float(size) == 7.0
