"""keras_dcn.ops.deform_conv2d in every float dtype: results and gradients keep the
dtype of the inputs, and half types accumulate in float32."""

import pytest
import tensorflow as tf

from keras_dcn.ops import deform_conv2d
from tests.ops.helpers import DTYPES


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_types_accumulate_in_float32(dtype):
    """Sums of 4096 ones: a running sum in float16 would stop at 2048 and one in
    bfloat16 at 256; 4096 itself is exact in every dtype."""
    # The output sums 4096 input channels of one tap.
    channels = 4096
    inputs = tf.ones([1, 1, 1, channels], dtype)
    kernel = tf.ones([1, 1, channels, 1], dtype)
    output = deform_conv2d(inputs, tf.zeros([1, 1, 1, 2], dtype), kernel)
    assert output.dtype == dtype
    assert float(output[0, 0, 0, 0]) == 4096.0

    # The kernel gradient sums 64 x 64 output pixels, the input gradient 4096 filters.
    inputs = tf.ones([1, 64, 64, 1], dtype)
    offsets = tf.zeros([1, 64, 64, 2], dtype)
    mask = tf.ones([1, 64, 64, 1], dtype)
    kernel = tf.ones([1, 1, 1, channels], dtype)
    with tf.GradientTape() as tape:
        tape.watch([inputs, offsets, mask, kernel])
        output = deform_conv2d(inputs, offsets, kernel, mask)
    grads = tape.gradient(output, [inputs, offsets, mask, kernel])
    assert all(grad.dtype == dtype for grad in grads)
    assert float(tf.reduce_max(grads[3])) == float(tf.reduce_min(grads[3])) == 4096.0
    assert float(tf.reduce_max(grads[0])) == float(tf.reduce_min(grads[0])) == 4096.0
    # The mask gradient of a pixel sums the 4096 filters too.
    assert float(tf.reduce_max(grads[2])) == float(tf.reduce_min(grads[2])) == 4096.0
