"""Repeated calls do not leak: resident memory stays flat over many forward and
backward passes of both ops, and over layer calls inside `tf.function` with shapes
that change from call to call."""

import gc
import pathlib
import resource

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.layers import DeformConv2D, DeformRoIPool
from keras_dcn.ops import deform_conv2d, deform_roi_pool

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not pathlib.Path("/proc/self/statm").exists(),
                       reason="reads resident memory from /proc (Linux)"),
]

# Growth allowed over the measured calls. The first calls (warm-up, not measured)
# fill allocator pools and TensorFlow's caches.
LIMIT_MIB = 50


def _resident_mib():
    pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _growth_mib(step, calls, warm_up):
    for i in range(warm_up):
        step(i)
    gc.collect()
    before = _resident_mib()
    for i in range(calls):
        step(i)
    gc.collect()
    return _resident_mib() - before


def _conv_step():
    rng = np.random.default_rng(0)
    tensors = [tf.constant(rng.normal(size=s), tf.float32) for s in
               [(2, 8, 8, 4), (2, 8, 8, 18), (2, 8, 8, 9), (3, 3, 4, 8)]]

    def step(_):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = deform_conv2d(tensors[0], tensors[1], tensors[3], mask=tensors[2],
                                padding="same")
        tape.gradient(out, tensors)
    return step


def _roi_pool_step():
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(2, 12, 12, 8)), tf.float32)
    rois = tf.constant([[0, 1.0, 2.0, 9.0, 10.0], [1, 0.0, 0.0, 11.0, 7.5]], tf.float32)
    offsets = tf.constant(rng.normal(size=(2, 3, 3, 2)) * 0.3, tf.float32)
    mask = tf.constant(rng.uniform(size=(2, 3, 3, 1)), tf.float32)
    tensors = [features, offsets, mask]

    def step(_):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = deform_roi_pool(features, rois, offsets, mask, output_size=3)
        tape.gradient(out, tensors)
    return step


@pytest.mark.parametrize("make_step", [_conv_step, _roi_pool_step],
                         ids=["deform_conv2d", "deform_roi_pool"])
def test_op_calls_do_not_leak(make_step):
    growth = _growth_mib(make_step(), calls=10_000, warm_up=500)
    assert growth < LIMIT_MIB, f"resident memory grew by {growth:.1f} MiB"


def test_layer_calls_with_changing_shapes_do_not_leak():
    conv = DeformConv2D(8, 3, padding="same")
    pool = DeformRoIPool(output_size=3, spatial_scale=0.5)
    pool(conv(tf.zeros([1, 8, 8, 4])), tf.constant([[0, 1.0, 1.0, 5.0, 5.0]]))  # build

    # One trace serves every size: the spatial sizes and the RoI count are unknown.
    @tf.function(input_signature=[tf.TensorSpec([2, None, None, 4], tf.float32),
                                  tf.TensorSpec([None, 5], tf.float32)])
    def step(images, rois):
        with tf.GradientTape() as tape:
            features = conv(images)
            loss = tf.reduce_sum(pool(features, rois))
        return tape.gradient(loss, conv.trainable_variables + pool.trainable_variables)

    rng = np.random.default_rng(0)

    def call(i):
        size = 8 + i % 9
        images = tf.constant(rng.normal(size=(2, size, size + i % 3, 4)), tf.float32)
        count = 1 + i % 4
        corners = np.sort(rng.uniform(0, 2 * size, size=(count, 2, 2)), axis=1)
        rois = np.concatenate([np.arange(count)[:, None] % 2,
                               corners[:, 0], corners[:, 1]], axis=1)
        step(images, tf.constant(rois, tf.float32))

    growth = _growth_mib(call, calls=1_000, warm_up=100)
    assert step.experimental_get_tracing_count() == 1
    assert growth < LIMIT_MIB, f"resident memory grew by {growth:.1f} MiB"
