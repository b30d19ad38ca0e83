"""keras_dcn.ops._implementation: which implementation runs, the composite under XLA and
inside `standard_ops_only`, and what the composite needs (the composite's values and
gradients are checked against the reference with the custom kernels', in
test_deform_conv_reference.py, test_deform_conv_gradients.py and
test_deform_roi_pool.py)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn import ops
from keras_dcn.ops import _implementation
from tests.ops.conv_cases import make_case
from tests.ops.helpers import assert_close
from tests.ops.roi_pool_cases import make_case as make_roi_case


def _op_types(function):
    """The op types of a concrete function's graph."""
    return {op.type for op in function.graph.get_operations()}


def _conv_case(rng, strides=1):
    case = make_case(rng, batch=2, size=(7, 6), channels=4, filters=5, padding="same",
                     strides=strides, offset_scale=2.0)
    return {name: tf.constant(value, tf.float32) for name, value in case.tensors().items()}


def test_implementation_must_be_one_of_three(rng):
    tensors = _conv_case(rng)
    with pytest.raises(ValueError, match="implementation must be one of 'auto', 'custom', "
                                         "'composite', got 'fast'"):
        ops.deform_conv2d(**tensors, padding="same", implementation="fast")
    features, rois, _, _ = make_roi_case(rng)
    with pytest.raises(ValueError, match="implementation must be one of"):
        ops.deform_roi_pool(features, rois, implementation=None)


@pytest.mark.parametrize("implementation, in_graph", [
    ("auto", True), ("custom", True), ("composite", False)])
def test_graph_holds_the_kernel_only_when_it_runs(implementation, in_graph, rng):
    tensors = _conv_case(rng)
    function = tf.function(lambda t: ops.deform_conv2d(
        **t, padding="same", implementation=implementation)).get_concrete_function(tensors)
    assert ("DcnDeformConv2D" in _op_types(function)) is in_graph


def test_standard_ops_only_overrides_every_implementation(rng):
    """Inside the scope (nested too) even "custom" is built from standard ops; after
    it, the kernels are back."""
    tensors = _conv_case(rng)
    features, rois, offsets, mask = make_roi_case(rng)

    def trace():
        conv = tf.function(lambda t: ops.deform_conv2d(
            **t, padding="same", implementation="custom")).get_concrete_function(tensors)
        pool = tf.function(lambda f: ops.deform_roi_pool(
            f, rois, offsets, mask, output_size=(3, 4))).get_concrete_function(
                tf.constant(features))
        return _op_types(conv) | _op_types(pool)

    with ops.standard_ops_only():
        with ops.standard_ops_only():
            pass
        inside = trace()
    assert not any(t.startswith("Dcn") for t in inside)
    assert {"DcnDeformConv2D", "DcnDeformRoiPool"} <= trace()


def test_xla_runs_the_composite_with_the_kernels_values_and_gradients(rng):
    """Under `jit_compile=True`, "auto" compiles (the kernels cannot) and gives what the
    kernels give eagerly, gradients included."""
    tensors = _conv_case(rng)
    features, rois, offsets, mask = make_roi_case(rng)
    features, offsets, mask = (tf.constant(v) for v in (features, offsets, mask))

    def run(t, f, o, m):
        with tf.GradientTape() as tape:
            tape.watch([t, f, o, m])
            conv = ops.deform_conv2d(**t, padding="same")
            pool = ops.deform_roi_pool(f, rois, o, m, output_size=(3, 4), spatial_scale=0.5)
            loss = tf.reduce_sum(conv ** 2) + tf.reduce_sum(tf.cast(pool, tf.float32) ** 2)
        return [conv, pool, *tape.gradient(loss, [t["offsets"], t["mask"], f, o, m])]

    compiled = tf.function(run, jit_compile=True)(tensors, features, offsets, mask)
    eager = run(tensors, features, offsets, mask)
    for got, want in zip(compiled, eager):
        assert_close(got, want, want.dtype)


def test_adaptive_roi_grid_is_refused_under_xla(rng):
    features, rois, _, _ = make_roi_case(rng)
    pool = tf.function(lambda f: ops.deform_roi_pool(f, rois, sampling_ratio=0),
                       jit_compile=True)
    with pytest.raises(ValueError, match="sampling_ratio must be > 0 under XLA"):
        pool(tf.constant(features))


def test_composite_on_shapes_known_only_at_run_time(rng):
    """Unknown batch and spatial sizes (SAME padding then computed in the graph) and an
    unknown number of RoIs with an adaptive grid: the kernels' results."""
    tensors = _conv_case(rng, strides=2)
    specs = {name: tf.TensorSpec([None] * 4 if name != "bias" and name != "kernel"
                                 else value.shape, value.dtype)
             for name, value in tensors.items()}
    conv = tf.function(lambda t: ops.deform_conv2d(
        **t, padding="same", strides=2, implementation="composite"), input_signature=[specs])
    want = ops.deform_conv2d(**tensors, padding="same", strides=2, implementation="custom")
    assert_close(conv(tensors), want, tf.float32)

    features, rois, offsets, mask = make_roi_case(rng, output_size=(2, 3))
    pool = tf.function(
        lambda f, r: ops.deform_roi_pool(f, r, output_size=(2, 3), sampling_ratio=0,
                                         implementation="composite"),
        input_signature=[tf.TensorSpec([None] * 4, tf.float64),
                         tf.TensorSpec([None, 5], tf.float64)])
    want = ops.deform_roi_pool(features, rois, output_size=(2, 3), sampling_ratio=0,
                               implementation="custom")
    assert_close(pool(features, rois), want)


@pytest.mark.parametrize("row, pattern", [
    ([2.0, 0, 0, 1, 1], r"rois\[.*0\] \(the batch index\)"),
    ([np.nan, 0, 0, 1, 1], r"rois\[.*0\] \(the batch index\)"),
    ([0, 0, np.inf, 1, 1], "finite coordinates"),
    ([0, 2, 0, 1, 1], "x1 <= x2 and y1 <= y2"),
])
def test_composite_refuses_the_rois_the_kernels_refuse(row, pattern):
    features = tf.ones((2, 4, 4, 1))
    for implementation in ("custom", "composite"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            ops.deform_roi_pool(features, tf.constant([row], tf.float32),
                                implementation=implementation)


def test_composite_needs_a_static_kernel_shape(rng):
    tensors = _conv_case(rng)
    specs = {name: tf.TensorSpec(value.shape if name != "kernel" else [None] * 4,
                                 value.dtype) for name, value in tensors.items()}
    conv = tf.function(lambda t: ops.deform_conv2d(**t, padding="same",
                                                   implementation="composite"),
                       input_signature=[specs])
    with pytest.raises(ValueError, match="kernel must have a static shape"):
        conv.get_concrete_function()


def test_supports_xla_checks_the_implementation():
    with pytest.raises(ValueError, match="implementation must be one of"):
        _implementation.supports_xla("xla")
