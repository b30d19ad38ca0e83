"""Both ops, forward and gradients, called from many Python threads at once give what
the same calls give one after another: the kernels share no mutable state between
calls (scratch buffers, cached ISA choice, thread pools)."""

import concurrent.futures

import numpy as np
import tensorflow as tf

from keras_dcn.ops import deform_conv2d, deform_roi_pool
from tests.ops.roi_pool_cases import make_case

THREADS = 8


def _conv_call(seed):
    """Output and every gradient of one deformable convolution drawn from `seed`; the
    sizes differ between seeds so that concurrent calls run different shapes."""
    rng = np.random.default_rng(seed)
    n, h, w, cin, cout = 1 + seed % 2, 6 + seed % 3, 7, 3 + seed % 4, 4
    tensors = [
        tf.constant(rng.normal(size=(n, h, w, cin)), tf.float32),
        tf.constant(rng.normal(size=(n, h, w, 18)), tf.float32),
        tf.constant(rng.uniform(size=(n, h, w, 9)), tf.float32),
        tf.constant(rng.normal(size=(3, 3, cin, cout)), tf.float32),
    ]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        inputs, offsets, mask, kernel = tensors
        out = deform_conv2d(inputs, offsets, kernel, mask=mask, padding="same")
        loss = tf.reduce_sum(out * out)
    return [out, *tape.gradient(loss, tensors)]


def _roi_pool_call(seed):
    """Output and every gradient of one deformable RoI pooling drawn from `seed`."""
    rng = np.random.default_rng(seed)
    features, rois, offsets, mask = make_case(rng, channels=4 + seed % 5,
                                              num_rois=3 + seed % 4, dtype=np.float32)
    tensors = [tf.constant(v) for v in (features, offsets, mask)]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        out = deform_roi_pool(tensors[0], rois, tensors[1], tensors[2], output_size=(3, 4),
                              spatial_scale=0.5)
        loss = tf.reduce_sum(out * out)
    return [out, *tape.gradient(loss, tensors)]


def _same_concurrently(call):
    seeds = list(range(8 * THREADS))
    serial = [call(seed) for seed in seeds]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        concurrent_results = list(pool.map(call, seeds))
    for seed, want, got in zip(seeds, serial, concurrent_results):
        for index, (a, b) in enumerate(zip(want, got)):
            np.testing.assert_array_equal(a.numpy(), b.numpy(),
                                          err_msg=f"seed {seed}, result {index}")


def test_deform_conv2d_from_many_threads():
    _same_concurrently(_conv_call)


def test_deform_roi_pool_from_many_threads():
    _same_concurrently(_roi_pool_call)
