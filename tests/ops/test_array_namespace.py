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


def test_split_last_cuts_the_last_axis_in_both_namespaces():
    """`split_last(x, i)` is `(x[..., :i], x[..., i:])`, with the gradient of both
    parts flowing back to `x`, through TensorFlow's ops and through `keras.ops`."""
    from keras_dcn.ops._array_namespace import KERAS

    x = tf.constant(np.arange(24.0).reshape(2, 3, 4))
    for namespace in (xp, KERAS):
        with tf.GradientTape() as tape:
            tape.watch(x)
            head, tail = namespace.split_last(x, 3)
            loss = tf.reduce_sum(head * 2.0) + tf.reduce_sum(tail * 5.0)
        np.testing.assert_array_equal(head, x.numpy()[..., :3])
        np.testing.assert_array_equal(tail, x.numpy()[..., 3:])
        np.testing.assert_array_equal(tape.gradient(loss, x),
                                      np.broadcast_to([2.0, 2.0, 2.0, 5.0], (2, 3, 4)))


def test_keras_namespace_computes_the_composites_as_tensorflow_does(rng):
    """Both composites through `keras.ops` (here on Keras' TensorFlow backend) give
    the values and gradients of the same math through TensorFlow's ops."""
    from keras_dcn.ops import _deform_conv_composite, _deform_roi_pool_composite
    from keras_dcn.ops._array_namespace import KERAS
    from tests.ops.conv_cases import make_case
    from tests.ops.roi_pool_cases import make_case as make_roi_case

    case = make_case(rng, size=(7, 6), channels=4, filters=6, strides=(2, 1),
                     padding=((1, 1), (0, 2)), groups=2, deformable_groups=2,
                     offset_scale=2.0)
    conv = {name: tf.constant(value, tf.float32) for name, value in case.tensors().items()}
    features, rois, offsets, mask = (tf.constant(v, tf.float32)
                                     for v in make_roi_case(rng, output_size=(2, 3)))

    def run(namespace):
        with tf.GradientTape() as tape:
            tape.watch([conv, features, offsets, mask])
            outputs = [
                _deform_conv_composite.deform_conv2d(
                    namespace, conv["inputs"], conv["offsets"], conv["mask"],
                    conv["kernel"], conv["bias"], (2, 1), (1, 1), (1, 0), 2, 2),
                _deform_roi_pool_composite.deform_roi_pool(
                    namespace, features, rois, offsets, mask, (2, 3), 0.5, 0, 0.1, True)]
            loss = sum(tf.reduce_sum(tf.convert_to_tensor(o) ** 2) for o in outputs)
        grads = tape.gradient(loss, [conv["inputs"], conv["offsets"], conv["mask"],
                                     conv["kernel"], features, offsets, mask])
        return [np.asarray(t) for t in outputs + grads]

    for got, want in zip(run(KERAS), run(xp)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
