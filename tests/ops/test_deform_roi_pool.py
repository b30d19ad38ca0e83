"""keras_dcn.ops.deform_roi_pool against the plain-TensorFlow reference in
tests/reference.py (RoIAlign without offsets; values and autodiff gradients with them),
against numeric gradients, in every dtype and data format, and on every bad argument."""

import functools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_dcn import ops
from keras_dcn._library import ops as lib
from keras_dcn.ops import deform_roi_pool
from tests import reference
from tests.ops.helpers import DTYPES, IMPLEMENTATIONS, assert_close
from tests.ops.roi_pool_cases import (
    OPTIONS, make_case, op_and_grads, random_rois, reference_and_grads)

InvalidArgumentError = tf.errors.InvalidArgumentError


# ----------------------------------------------------------------------------------
# Without offsets and mask it is RoIAlign


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio,spatial_scale", [(2, 0.5), (0, 0.25), (1, 1.0), (3, 0.125)])
def test_zero_offsets_and_no_mask_is_roi_align(aligned, sampling_ratio, spatial_scale, rng):
    """The op without offsets and mask is RoIAlign: the reference's, itself checked
    against RoIAlign written loop by loop (tests/test_reference.py)."""
    features = rng.normal(size=(2, 8, 10, 3))
    rois = random_rois(rng, 5, 2, 8 / spatial_scale, 10 / spatial_scale)
    rois[0] = [1, 0.0, 0.0, 10 / spatial_scale, 8 / spatial_scale]  # the whole image
    rois[1, 3] = rois[1, 1]  # zero width
    kwargs = dict(output_size=(3, 4), spatial_scale=spatial_scale,
                  sampling_ratio=sampling_ratio, aligned=aligned)
    expected = reference.deform_roi_pool(features, rois, **kwargs)
    out = deform_roi_pool(features, rois, **kwargs)
    assert_close(out, expected)
    # Explicit zero offsets and a mask of ones change nothing.
    out = deform_roi_pool(features, rois, np.zeros((5, 3, 4, 2)), np.ones((5, 3, 4, 1)), **kwargs)
    assert_close(out, expected)


def test_known_values_of_a_tiny_map():
    # One bin, one sample at the box centre: a bilinear read of a 2 x 2 ramp.
    features = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 2, 2, 1)
    rois = [[0, 0.0, 0.0, 2.0, 2.0]]  # aligned: box from -0.5 to 1.5, centre 0.5
    out = deform_roi_pool(features, rois, output_size=1, sampling_ratio=1)
    assert_close(out, [[[[1.5]]]])
    # An offset of dx = 0.25 with gamma = 1 moves the centre by 0.5 pixel to x = 1.
    out = deform_roi_pool(features, rois, [[[[0.0, 0.25]]]], [[[[2.0]]]], output_size=1,
                          sampling_ratio=1, gamma=1.0)
    assert_close(out, [[[[2.0 * 2.0]]]])


# ----------------------------------------------------------------------------------
# Offsets, mask and every option against the reference (values and gradients)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_matches_reference(options, implementation, rng):
    options = dict(options)
    output_size = options.pop("output_size", (3, 4))
    output_size = (output_size, output_size) if isinstance(output_size, int) else output_size
    spatial_scale = options.pop("spatial_scale", 0.5)
    features, rois, offsets, mask = make_case(
        rng, output_size=output_size, spatial_scale=spatial_scale)
    kwargs = dict(options, output_size=output_size, spatial_scale=spatial_scale)
    out, grads, upstream = op_and_grads(features, rois, offsets, mask, **kwargs,
                                        implementation=implementation)
    expected, expected_grads = reference_and_grads(features, rois, offsets, mask, upstream,
                                                   **kwargs)
    assert_close(out, expected, what="output")
    for name, grad, expected_grad in zip(("features", "offsets", "mask"), grads, expected_grads):
        assert_close(grad, expected_grad, what=f"{name} gradient")


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_random_configurations_match_reference(data):
    batch = data.draw(st.integers(1, 2), "batch")
    height, width = data.draw(st.integers(1, 6), "height"), data.draw(st.integers(1, 6), "width")
    output_size = (data.draw(st.integers(1, 4), "oh"), data.draw(st.integers(1, 4), "ow"))
    num_rois = data.draw(st.integers(0, 4), "num_rois")
    spatial_scale = data.draw(st.sampled_from([1.0, 0.5, 0.25]), "spatial_scale")
    kwargs = dict(output_size=output_size, spatial_scale=spatial_scale,
                  sampling_ratio=data.draw(st.integers(-1, 3), "sampling_ratio"),
                  gamma=data.draw(st.sampled_from([0.0, 0.1, 1.0]), "gamma"),
                  aligned=data.draw(st.booleans(), "aligned"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), "seed"))
    features, rois, offsets, mask = make_case(
        rng, batch=batch, height=height, width=width,
        channels=data.draw(st.integers(1, 3), "channels"), num_rois=num_rois,
        output_size=output_size, spatial_scale=spatial_scale)
    out, grads, upstream = op_and_grads(features, rois, offsets, mask, **kwargs)
    expected, expected_grads = reference_and_grads(features, rois, offsets, mask, upstream,
                                                   **kwargs)
    assert_close(out, expected, what="output")
    for name, grad, expected_grad in zip(("features", "offsets", "mask"), grads, expected_grads):
        assert_close(grad, expected_grad, what=f"{name} gradient")


def test_many_overlapping_rois_and_odd_channel_counts(rng):
    # Many RoIs over the same pixels and a channel count that is not a multiple of the
    # kernels' channel blocks: the features gradient must add every contribution.
    features = rng.normal(size=(3, 12, 13, 37))
    rois = random_rois(rng, 40, 3, 12, 13, outside=0.0)
    rois[:10] = [2, 2.0, 3.0, 9.0, 8.0]
    offsets = rng.normal(size=(40, 3, 3, 2))
    mask = rng.uniform(size=(40, 3, 3, 1))
    kwargs = dict(output_size=(3, 3), spatial_scale=1.0, sampling_ratio=0)
    out, grads, upstream = op_and_grads(features, rois, offsets, mask, **kwargs)
    expected, expected_grads = reference_and_grads(features, rois, offsets, mask, upstream, **kwargs)
    assert_close(out, expected, what="output")
    for name, grad, expected_grad in zip(("features", "offsets", "mask"), grads, expected_grads):
        assert_close(grad, expected_grad, what=f"{name} gradient")


def test_mask_gradient_is_the_mean_of_the_samples(rng):
    features, rois, offsets, mask = make_case(rng)
    kwargs = dict(output_size=(3, 4), spatial_scale=0.5)
    _, grads, upstream = op_and_grads(features, rois, offsets, mask, **kwargs)
    unmasked = deform_roi_pool(features, rois, offsets, None, **kwargs)
    assert_close(grads[2], tf.reduce_sum(unmasked * upstream, axis=-1, keepdims=True))


# ----------------------------------------------------------------------------------
# Data formats and dtypes


def test_channels_first(rng):
    features, rois, offsets, mask = make_case(rng, output_size=(3, 5))
    kwargs = dict(output_size=(3, 5), spatial_scale=0.5)
    last = deform_roi_pool(features, rois, offsets, mask, **kwargs)
    first_features = tf.transpose(features, [0, 3, 1, 2])
    with tf.GradientTape() as tape:
        tape.watch(first_features)
        first = deform_roi_pool(first_features, rois, offsets, mask,
                                data_format="channels_first", **kwargs)
    assert first.shape == (4, 5, 3, 5)
    assert_close(first, tf.transpose(last, [0, 3, 1, 2]), tolerance=0)
    grad = tape.gradient(first, first_features)
    _, grads, _ = op_and_grads(features, rois, offsets, mask, upstream=tf.ones_like(last), **kwargs)
    assert_close(grad, tf.transpose(grads[0], [0, 3, 1, 2]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sampling_ratio", [2, 0])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_dtypes(dtype, sampling_ratio, rng, implementation):
    features, rois, offsets, mask = make_case(rng, channels=8, spatial_scale=0.5,
                                              offset_scale=0.3)
    # The inputs as the op sees them, so that only the computation is compared.
    features, offsets, mask = (tf.cast(tf.cast(v, dtype), tf.float64).numpy()
                               for v in (features, offsets, mask))
    kwargs = dict(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=sampling_ratio)
    cast = [tf.cast(v, dtype) for v in (features, offsets, mask)]
    upstream = tf.cast(rng.uniform(size=(4, 3, 4, 8)), dtype)
    out, grads, _ = op_and_grads(*[c.numpy() for c in cast[:1]], rois,
                                 *[c.numpy() for c in cast[1:]], upstream=upstream, **kwargs,
                                 implementation=implementation)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    expected, expected_grads = reference_and_grads(features, rois, offsets, mask, upstream, **kwargs)
    assert_close(out, expected, dtype, "output")
    for name, grad, expected_grad in zip(("features", "offsets", "mask"), grads, expected_grads):
        assert_close(grad, expected_grad, dtype, f"{name} gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_half_types_accumulate_in_float32(dtype, implementation):
    deform_roi_pool = functools.partial(ops.deform_roi_pool, implementation=implementation)
    # 64 x 64 samples of 1 per bin: a running sum in float16 would stop at 2048 and
    # one in bfloat16 at 256, far below 4096.
    features = tf.ones([1, 4, 4, 1], dtype)
    rois = [[0, 0.0, 0.0, 4.0, 4.0]]
    with tf.GradientTape() as tape:
        tape.watch(features)
        out = deform_roi_pool(features, rois, output_size=1, sampling_ratio=64)
    assert float(out[0, 0, 0, 0]) == 1.0
    # The features gradient adds 4096 * 4 contributions into 16 pixels.
    assert float(tf.reduce_sum(tf.cast(tape.gradient(out, features), tf.float64))) == \
        pytest.approx(1.0, rel=1e-2)


def test_float64_reads_boxes_and_attributes_in_float64():
    """float64 features: corners, spatial_scale and gamma are not rounded to float32.
    A box 0.1 wide at x = 1000.1 (float32 rounds 1000.1 by 6e-5) on a ramp whose value
    is 10 * x: the output is the ramp at the bin's shifted centre, known in closed
    form."""
    width = 1200
    ramp = 10.0 * np.arange(width, dtype=np.float64)
    features = np.broadcast_to(ramp, (1, 3, width)).reshape(1, 3, width, 1).copy()
    rois = np.array([[0, 1000.1, 1.0, 1000.2, 1.1]])
    dx = 0.3
    for scale in (1.0, 0.1):
        out = deform_roi_pool(features, rois / scale, [[[[0.0, dx]]]], output_size=1,
                              sampling_ratio=1, spatial_scale=scale, gamma=0.1)
        # Aligned box from 1000.1 - 0.5 to 1000.2 - 0.5, shifted by 0.1 * width * dx.
        x = 1000.1 - 0.5 + 0.05 + 0.1 * 0.1 * dx
        np.testing.assert_allclose(float(out[0, 0, 0, 0]), 10.0 * x, rtol=1e-14)
    # Other dtypes still read float32 boxes (the op rounds float64 ones).
    rounded = np.asarray(np.asarray(rois, np.float32), np.float64)
    np.testing.assert_array_equal(
        deform_roi_pool(features.astype(np.float32), rois, output_size=2),
        deform_roi_pool(features.astype(np.float32), rounded, output_size=2))


def test_raw_op_takes_rois_of_either_type(rng):
    """Graphs written before float64 RoIs pass float32 ones with float64 features;
    the kernel converts them, as it converts float64 RoIs for the other dtypes."""
    features, rois, offsets, mask = make_case(rng)
    rois32 = rois.astype(np.float32)
    for dtype in (tf.float64, tf.float32):
        args = [tf.cast(features, dtype), None, tf.cast(offsets, dtype), tf.cast(mask, dtype)]
        outputs = []
        for roi_type in (tf.float32, tf.float64):
            args[1] = tf.constant(rois32, roi_type)
            outputs.append(lib.dcn_deform_roi_pool(*args, output_size=[3, 4],
                                                   spatial_scale=0.5))
            grads = lib.dcn_deform_roi_pool_grad(*args, tf.ones_like(outputs[-1]),
                                                 output_size=[3, 4], spatial_scale=0.5)
            outputs.extend(grads)
        for a, b in zip(outputs[:4], outputs[4:]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_border_rule(implementation):
    deform_roi_pool = functools.partial(ops.deform_roi_pool, implementation=implementation)
    # RoIAlign reads the edge pixel for -1 <= x <= 0 and W - 1 <= x <= W, and 0 beyond.
    features = np.arange(1.0, 21.0).reshape(1, 4, 5, 1)
    for x, expected in [(-1.0, 11.0), (-0.5, 11.0), (0.0, 11.0), (4.0, 15.0), (4.5, 15.0),
                        (5.0, 15.0), (-1.01, 0.0), (5.01, 0.0)]:
        # One sample per bin at the centre of a 2-pixel box centred on (2, x) (aligned).
        rois = [[0, x - 0.5, 1.5, x + 1.5, 3.5]]
        out = deform_roi_pool(features, rois, output_size=1, sampling_ratio=1)
        assert float(out[0, 0, 0, 0]) == pytest.approx(expected), x


def test_rois_get_no_gradient(rng):
    features, rois, offsets, mask = make_case(rng, dtype=np.float32)
    rois = tf.constant(rois)
    with tf.GradientTape() as tape:
        tape.watch(rois)
        out = deform_roi_pool(features, rois, offsets, mask, output_size=(3, 4))
    assert tape.gradient(out, rois) is None


@pytest.mark.parametrize("watch_coordinates", [False, True])
def test_features_gradient_without_coordinate_gradients(watch_coordinates, rng):
    """With offsets and mask a GradientTape needs no gradient for (plain RoIAlign's
    zeros and ones, or constants), the gradient op runs with coordinate_gradients=False
    and gives the same features gradient as the reference; watched, it computes them."""
    features, rois, offsets, mask = make_case(rng, dtype=np.float32, offset_scale=0.5)
    upstream = rng.normal(size=(rois.shape[0], 3, 4, features.shape[-1]))
    features, offsets, mask = (tf.constant(v) for v in (features, offsets, mask))

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            tape.watch([features, offsets, mask] if watch_coordinates else features)
            out = deform_roi_pool(features, rois, offsets, mask, output_size=(3, 4))
            loss = tf.reduce_sum(out * tf.cast(upstream, out.dtype))
        return tape.gradient(loss, [features, offsets, mask])

    grads = gradients()
    _, expected = reference_and_grads(features, rois, offsets, mask, upstream,
                                      output_size=(3, 4))
    assert_close(grads[0], expected[0], tf.float32)
    graph = gradients.get_concrete_function().graph
    kernels = [op for op in graph.get_operations() if op.type == "DcnDeformRoiPoolGrad"]
    assert [op.get_attr("coordinate_gradients") for op in kernels] == [watch_coordinates]
    if watch_coordinates:
        assert_close(grads[1], expected[1], tf.float32)
        assert_close(grads[2], expected[2], tf.float32)
    else:
        assert grads[1] is None and grads[2] is None


def test_grad_kernel_without_coordinate_gradients(rng):
    """coordinate_gradients=False: the same features gradient, empty offset and mask
    gradients, in the shape function too."""
    features, rois, offsets, mask = make_case(rng, dtype=np.float32, offset_scale=0.5)
    upstream = rng.normal(size=(rois.shape[0], 2, 2, features.shape[-1])).astype(np.float32)
    args = (features, rois, offsets[:, :2, :2], mask[:, :2, :2], upstream)
    full = lib.dcn_deform_roi_pool_grad(*args, output_size=[2, 2])
    alone = lib.dcn_deform_roi_pool_grad(*args, output_size=[2, 2],
                                         coordinate_gradients=False)
    np.testing.assert_array_equal(alone[0].numpy(), full[0].numpy())
    assert alone[1].shape == (0,) and alone[2].shape == (0,)
    symbolic = tf.function(lambda *a: lib.dcn_deform_roi_pool_grad(
        *a, output_size=[2, 2], coordinate_gradients=False)).get_concrete_function(
            *(tf.TensorSpec(np.shape(a), tf.float32) for a in args))
    assert [o.shape.as_list() for o in symbolic.outputs[1:]] == [[0], [0]]


# ----------------------------------------------------------------------------------
# Numeric gradients (float64)


def _numeric_check(function, value, delta):
    theoretical, numerical = tf.test.compute_gradient(function, [value], delta=delta)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("options", [
    dict(sampling_ratio=2, aligned=True, gamma=0.3),
    dict(sampling_ratio=0, aligned=False, gamma=0.5),
], ids=["sr2-aligned", "adaptive-unaligned"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_numeric_gradients(options, implementation, rng):
    features, rois, offsets, mask = make_case(rng, batch=2, height=6, width=7, channels=2,
                                              num_rois=3, output_size=(2, 3), spatial_scale=1.0,
                                              offset_scale=0.5)
    rois[0] = [0, 1.3, 0.7, 4.6, 5.2]  # well inside, so most samples are not clamped
    kwargs = dict(options, output_size=(2, 3), spatial_scale=1.0,
                  implementation=implementation)

    _numeric_check(lambda f: deform_roi_pool(f, rois, offsets, mask, **kwargs),
                   tf.constant(features), 1e-3)
    _numeric_check(lambda o: deform_roi_pool(features, rois, o, mask, **kwargs),
                   tf.constant(offsets), 1e-6)
    _numeric_check(lambda m: deform_roi_pool(features, rois, offsets, m, **kwargs),
                   tf.constant(mask), 1e-3)


def test_offset_gradient_is_zero_where_the_read_is_clamped():
    # A sample left of the map (x in [-1, 0)) reads column 0 whatever x is.
    features = np.arange(12.0).reshape(1, 3, 4, 1)
    rois = [[0, 0.0, 0.0, 2.0, 2.0]]
    offsets = tf.constant([[[[0.0, -0.6]]]], tf.float64)  # x = 0.5 - 0.6 * 2 = -0.7
    _, grads, _ = op_and_grads(features, rois, offsets.numpy(), np.ones((1, 1, 1, 1)),
                               upstream=tf.ones([1, 1, 1, 1], tf.float64), output_size=1,
                               sampling_ratio=1, gamma=1.0)
    assert grads[1].numpy()[0, 0, 0, 1] == 0.0
    assert grads[1].numpy()[0, 0, 0, 0] != 0.0


# ----------------------------------------------------------------------------------
# Empty inputs, huge and NaN offsets, degenerate boxes


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_no_rois(rng, implementation):
    deform_roi_pool = functools.partial(ops.deform_roi_pool, implementation=implementation)
    features = tf.constant(rng.normal(size=(2, 5, 6, 3)), tf.float32)
    rois = tf.zeros([0, 5])
    out, grads, _ = op_and_grads(features.numpy(), rois, np.zeros((0, 7, 7, 2), np.float32),
                                 np.zeros((0, 7, 7, 1), np.float32),
                                 implementation=implementation)
    assert out.shape == (0, 7, 7, 3)
    assert grads[0].shape == (2, 5, 6, 3) and not np.any(grads[0].numpy())
    assert grads[1].shape == (0, 7, 7, 2) and grads[2].shape == (0, 7, 7, 1)
    # Without offsets or mask, and for an empty batch.
    assert deform_roi_pool(features, rois).shape == (0, 7, 7, 3)
    assert deform_roi_pool(tf.zeros([0, 5, 6, 3]), rois, output_size=2).shape == (0, 2, 2, 3)
    assert deform_roi_pool(features, rois, data_format="channels_first").shape == (0, 5, 7, 7)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_empty_feature_map_reads_zero(implementation):
    deform_roi_pool = functools.partial(ops.deform_roi_pool, implementation=implementation)
    rois = [[0, 1.0, 1.0, 3.0, 3.0], [1, 0.0, 0.0, 1.0, 1.0]]
    for shape in ([2, 0, 4, 3], [2, 4, 0, 3]):
        features = tf.zeros(shape)
        out, grads, _ = op_and_grads(features.numpy(), rois, np.ones((2, 2, 2, 2), np.float32),
                                     np.ones((2, 2, 2, 1), np.float32), output_size=2,
                                     implementation=implementation)
        assert out.shape == (2, 2, 2, 3) and not np.any(out.numpy())
        assert not np.any(grads[1].numpy()) and not np.any(grads[2].numpy())
    assert deform_roi_pool(tf.zeros([2, 4, 4, 0]), rois, output_size=2).shape == (2, 2, 2, 0)


@pytest.mark.parametrize("value", [1e30, -1e30, np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_huge_and_nan_offsets_give_finite_output(value, rng, implementation):
    features, rois, offsets, mask = make_case(rng, dtype=np.float32)
    offsets[0, 1, 2] = value
    offsets[1, :, :, 0] = value
    offsets[2, 0, 0, 1] = value
    kwargs = dict(output_size=(3, 4), spatial_scale=0.5)
    out, grads, upstream = op_and_grads(features, rois, offsets, mask, **kwargs,
                                        implementation=implementation)
    assert np.all(np.isfinite(out.numpy()))
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))
    # A bin moved out of the map reads 0 (NaN reads 0 too).
    assert not np.any(out.numpy()[0, 1, 2]) and not np.any(out.numpy()[1])
    if np.isfinite(value):
        expected, expected_grads = reference_and_grads(features, rois, offsets, mask, upstream,
                                                       **kwargs)
        assert_close(out, expected, what="output", tolerance=5e-6)
        for name, grad, expected_grad in zip(("features", "offsets", "mask"), grads,
                                             expected_grads):
            assert_close(grad, expected_grad, tf.float32, f"{name} gradient")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_degenerate_boxes_are_read_at_their_point(rng, implementation):
    deform_roi_pool = functools.partial(ops.deform_roi_pool, implementation=implementation)
    # x1 == x2 and y1 == y2: every bin reads the same point, also with the adaptive
    # grid (which has at least one sample per bin).
    features = rng.normal(size=(1, 6, 6, 2))
    rois = [[0, 4.0, 3.0, 4.0, 3.0]]
    point = reference.deform_roi_pool(features, rois, output_size=(1, 1), sampling_ratio=1)
    for sampling_ratio in (2, 0):
        out = deform_roi_pool(features, rois, output_size=2, sampling_ratio=sampling_ratio)
        assert_close(out, np.broadcast_to(point, (1, 2, 2, 2)))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_batch_index_is_truncated_and_rois_may_be_integers(rng, implementation):
    deform_roi_pool = functools.partial(ops.deform_roi_pool, implementation=implementation)
    features, rois, offsets, mask = make_case(rng, dtype=np.float32)
    fractional = rois.copy()
    fractional[:, 0] += 0.75
    kwargs = dict(output_size=(3, 4), spatial_scale=0.5)
    assert_close(deform_roi_pool(features, fractional, offsets, mask, **kwargs),
                 deform_roi_pool(features, rois, offsets, mask, **kwargs), tolerance=0)
    integer_rois = np.round(rois).astype(np.int64)
    assert_close(deform_roi_pool(features, integer_rois, offsets, mask, **kwargs),
                 deform_roi_pool(features, integer_rois.astype(np.float32), offsets, mask,
                                 **kwargs), tolerance=0)


# ----------------------------------------------------------------------------------
# Graphs with unknown shapes


def test_unknown_shapes_under_tf_function(rng):
    features, rois, offsets, mask = make_case(rng, dtype=np.float32)
    kwargs = dict(output_size=(3, 4), spatial_scale=0.5)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, None], tf.float32),
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec(None, tf.float32),
        tf.TensorSpec([None, None, None, None], tf.float32),
    ])
    def run(f, r, o, m):
        with tf.GradientTape() as tape:
            tape.watch([f, o, m])
            out = deform_roi_pool(f, r, o, m, **kwargs)
            loss = tf.reduce_sum(out * out)
        return out, tape.gradient(loss, [f, o, m])

    out, grads = run(features, rois, offsets, mask)
    with tf.GradientTape() as tape:
        eager_inputs = [tf.constant(v) for v in (features, offsets, mask)]
        tape.watch(eager_inputs)
        eager = deform_roi_pool(eager_inputs[0], rois, *eager_inputs[1:], **kwargs)
        loss = tf.reduce_sum(eager * eager)
    assert_close(out, eager, tolerance=0)
    for grad, eager_grad in zip(grads, tape.gradient(loss, eager_inputs)):
        assert_close(grad, eager_grad, tolerance=0)

    # Static shapes: what is known flows through, output_size is always known.
    concrete = tf.function(lambda f, r: deform_roi_pool(f, r, **kwargs)).get_concrete_function(
        tf.TensorSpec([2, None, None, 16], tf.float32), tf.TensorSpec([None, 5], tf.float32))
    assert concrete.outputs[0].shape.as_list() == [None, 3, 4, 16]
    concrete = tf.function(lambda f, r: deform_roi_pool(
        f, r, data_format="channels_first", **kwargs)).get_concrete_function(
        tf.TensorSpec([2, 16, None, None], tf.float32), tf.TensorSpec([8, 5], tf.float32))
    assert concrete.outputs[0].shape.as_list() == [8, 16, 3, 4]


def test_bad_values_fail_under_tf_function_too():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32), tf.TensorSpec(None, tf.float32)])
    def run(f, r):
        return deform_roi_pool(f, r, output_size=2)

    features = tf.zeros([1, 4, 4, 2])
    with pytest.raises(InvalidArgumentError, match=r"rois\[0, 0\] \(the batch index\)"):
        run(features, tf.constant([[1.0, 0, 0, 2, 2]]))
    with pytest.raises(InvalidArgumentError, match="rois must have shape"):
        run(features, tf.constant([[0.0, 0, 0, 2]]))
    with pytest.raises(InvalidArgumentError, match="features must have shape"):
        run(tf.zeros([4, 4, 2]), tf.constant([[0.0, 0, 0, 2, 2]]))


# ----------------------------------------------------------------------------------
# Bad arguments, one at a time

FEATURES = np.zeros((2, 6, 6, 3), np.float32)
ROIS = np.array([[0, 0, 0, 4, 4], [1, 1, 1, 5, 5]], np.float32)


@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(features=np.zeros((6, 6, 3), np.float32)), ValueError, "features must be a 4-D"),
    (dict(features=tf.zeros((2, 6, 6, 3), tf.int32)), TypeError, "features must be float16"),
    (dict(rois=ROIS[:, :4]), ValueError, r"rois must have shape \[R, 5\]"),
    (dict(rois=ROIS[0]), ValueError, "rois must be a 2-D"),
    (dict(rois=np.array([["a"] * 5])), TypeError, "rois must be a float or integer"),
    (dict(rois=ROIS > 0), TypeError, "rois must be a float or integer"),
    (dict(offsets=np.zeros((2, 7, 7), np.float32)), ValueError, "offsets must be a 4-D"),
    (dict(offsets=np.zeros((2, 7, 7, 1), np.float32)), ValueError, r"offsets must have shape \(2, 7, 7, 2\)"),
    (dict(offsets=np.zeros((3, 7, 7, 2), np.float32)), ValueError, r"offsets must have shape \(2, 7, 7, 2\)"),
    (dict(offsets=np.zeros((2, 7, 6, 2), np.float32)), ValueError, "offsets must have shape"),
    (dict(offsets=tf.zeros((2, 7, 7, 2), tf.float64)), TypeError, "offsets must have dtype float32"),
    (dict(mask=np.zeros((2, 7, 7, 2), np.float32)), ValueError, r"mask must have shape \(2, 7, 7, 1\)"),
    (dict(mask=np.zeros((2, 6, 7, 1), np.float32)), ValueError, "mask must have shape"),
    (dict(mask=np.zeros((7, 7, 1), np.float32)), ValueError, "mask must be a 4-D"),
    (dict(mask=tf.zeros((2, 7, 7, 1), tf.float16)), TypeError, "mask must have dtype float32"),
    (dict(output_size=0), ValueError, "output_size must be"),
    (dict(output_size=(7, 0)), ValueError, "output_size must be"),
    (dict(output_size=(7, 7, 7)), ValueError, "output_size must be"),
    (dict(output_size=(7.0, 7)), ValueError, "output_size must be"),
    (dict(spatial_scale=0.0), ValueError, "spatial_scale must be a finite number > 0"),
    (dict(spatial_scale=-0.5), ValueError, "spatial_scale must be a finite number > 0"),
    (dict(spatial_scale=float("nan")), ValueError, "spatial_scale must be"),
    (dict(spatial_scale=float("inf")), ValueError, "spatial_scale must be"),
    (dict(spatial_scale=1e-60), ValueError, "spatial_scale must be .* in float32"),
    (dict(spatial_scale="1"), ValueError, "spatial_scale must be"),
    (dict(sampling_ratio=1.5), ValueError, "sampling_ratio must be an int"),
    (dict(sampling_ratio=True), ValueError, "sampling_ratio must be an int"),
    (dict(sampling_ratio=5000), ValueError, "sampling_ratio must be at most 4096"),
    (dict(gamma=float("nan")), ValueError, "gamma must be a finite number"),
    (dict(gamma=1e300), ValueError, "gamma must be a finite number in float32"),
    (dict(gamma=None), ValueError, "gamma must be a finite number"),
    (dict(aligned="yes"), ValueError, "aligned must be a bool"),
    (dict(data_format="NHWC"), ValueError, "data_format must be one of"),
    (dict(features=np.zeros((2, 3, 6, 6), np.float32), offsets=np.zeros((2, 6, 6, 2), np.float32),
          data_format="channels_first", output_size=7), ValueError, "offsets must have shape"),
])
def test_bad_arguments(kwargs, error, pattern):
    arguments = dict(features=FEATURES, rois=ROIS)
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        deform_roi_pool(**arguments)


@pytest.mark.parametrize("row,pattern", [
    ([-1, 0, 0, 4, 4], r"rois\[1, 0\] \(the batch index\) must be a finite number in \[0, 2\)"),
    ([2, 0, 0, 4, 4], r"rois\[1, 0\] \(the batch index\) .* got 2"),
    ([-0.5, 0, 0, 4, 4], r"rois\[1, 0\] \(the batch index\)"),
    ([np.nan, 0, 0, 4, 4], r"rois\[1, 0\] \(the batch index\) .* got nan"),
    ([np.inf, 0, 0, 4, 4], r"rois\[1, 0\] \(the batch index\)"),
    ([1e30, 0, 0, 4, 4], r"rois\[1, 0\] \(the batch index\)"),
    ([0, np.nan, 0, 4, 4], r"rois\[1\] must have finite coordinates"),
    ([0, 0, 0, np.inf, 4], r"rois\[1\] must have finite coordinates"),
    ([0, 0, -np.inf, 4, 4], r"rois\[1\] must have finite coordinates"),
    ([0, 3, 0, 2, 4], r"rois\[1\] must have x1 <= x2 and y1 <= y2"),
    ([0, 0, 3, 4, 2.5], r"rois\[1\] must have x1 <= x2 and y1 <= y2"),
    ([0, -3e38, 0, 3e38, 4], r"rois\[1\] .* does not fit in float32"),
])
def test_bad_rois(row, pattern):
    rois = np.array([[0, 0, 0, 4, 4], row], np.float32)
    with pytest.raises(InvalidArgumentError, match=pattern):
        deform_roi_pool(FEATURES, rois, output_size=2, spatial_scale=1.0)
    # The gradient kernel checks them as well.
    with pytest.raises(InvalidArgumentError, match=pattern):
        lib.dcn_deform_roi_pool_grad(FEATURES, rois, np.zeros((2, 2, 2, 2), np.float32),
                                     np.ones((2, 2, 2, 1), np.float32),
                                     np.ones((2, 2, 2, 3), np.float32), output_size=[2, 2])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_rois_too_large_for_the_adaptive_grid(implementation):
    deform_roi_pool = functools.partial(ops.deform_roi_pool, implementation=implementation)
    rois = np.array([[0, 0, 0, 1e6, 1e6]], np.float32)
    with pytest.raises(InvalidArgumentError, match=r"rois.* too large for sampling_ratio <= 0"):
        deform_roi_pool(FEATURES, rois, output_size=2, sampling_ratio=0)
    # With a fixed grid it is fine: every sample is outside the map except a few.
    out = deform_roi_pool(FEATURES + 1, rois, output_size=2, sampling_ratio=2)
    assert np.all(np.isfinite(out.numpy()))


def test_no_images_but_rois():
    with pytest.raises(InvalidArgumentError, match=r"rois\[0, 0\] .* in \[0, 0\)"):
        deform_roi_pool(np.zeros((0, 6, 6, 3), np.float32), ROIS)


def _raw(features=FEATURES, rois=ROIS, offsets=None, mask=None, **attrs):
    attrs.setdefault("output_size", [2, 2])
    bins = [len(rois), *attrs["output_size"]]
    offsets = np.zeros(bins + [2], np.float32) if offsets is None else offsets
    mask = np.ones(bins + [1], np.float32) if mask is None else mask
    return lib.dcn_deform_roi_pool(features, rois, offsets, mask, **attrs)


@pytest.mark.parametrize("arguments,pattern", [
    (dict(features=np.zeros((2, 6, 6), np.float32)), "must be rank 4"),
    (dict(rois=np.zeros((2, 4), np.float32)), r"rois dimension 1 \(batch_index, x1, y1, x2, y2\) must be 5"),
    (dict(offsets=np.zeros((2, 2, 2, 3), np.float32)), r"offsets dimension 3 \(dy, dx\) must be 2, got 3"),
    (dict(offsets=np.zeros((3, 2, 2, 2), np.float32)), r"offsets dimension 0 \(num_rois\) must be 2, got 3"),
    (dict(offsets=np.zeros((2, 2, 3, 2), np.float32)), r"offsets dimension 2 \(output_size\[1\]\)"),
    (dict(mask=np.zeros((2, 2, 2, 2), np.float32)), "mask dimension 3 must be 1"),
    (dict(mask=np.zeros((2, 3, 2, 1), np.float32)), r"mask dimension 1 \(output_size\[0\]\)"),
])
def test_shape_function_checks_static_shapes(arguments, pattern):
    """The op's shape function (no Python checks) rejects static shapes that do not fit."""
    with pytest.raises((InvalidArgumentError, ValueError), match=pattern):
        tf.function(lambda: _raw(**arguments))()


@pytest.mark.parametrize("attrs,pattern", [
    (dict(output_size=[0, 2]), r"output_size must be two positive integers .* got \[0, 2\]"),
    (dict(output_size=[2]), "output_size must be two positive integers"),
    (dict(spatial_scale=0.0), "spatial_scale must be a finite number > 0"),
    (dict(spatial_scale=float("nan")), "spatial_scale must be a finite number > 0"),
    (dict(gamma=float("inf")), "gamma must be a finite number"),
    (dict(sampling_ratio=4097), "sampling_ratio must be at most 4096"),
])
def test_raw_op_checks_attributes(attrs, pattern):
    """The op itself (no Python checks) rejects bad attributes, eagerly and in graphs."""
    attrs.setdefault("output_size", [2, 2])
    bins = [2, 2, 2]
    arguments = dict(offsets=np.zeros(bins + [2], np.float32), mask=np.ones(bins + [1], np.float32))
    with pytest.raises((InvalidArgumentError, ValueError), match=pattern):
        _raw(**arguments, **attrs)
    with pytest.raises((InvalidArgumentError, ValueError), match=pattern):
        tf.function(lambda: _raw(**arguments, **attrs))()
    with pytest.raises((InvalidArgumentError, ValueError), match=pattern):
        lib.dcn_deform_roi_pool_grad(FEATURES, ROIS, arguments["offsets"], arguments["mask"],
                                     np.zeros([2, 2, 2, 3], np.float32), **attrs)


@pytest.mark.parametrize("arguments,pattern", [
    (dict(features=np.zeros((2, 6, 6), np.float32)), r"features must have shape \[batch, height, width"),
    (dict(rois=np.zeros((2, 4), np.float32)), r"rois must have shape \[num_rois, 5\]"),
    (dict(rois=np.zeros((2, 5, 1), np.float32)), r"rois must have shape \[num_rois, 5\]"),
    (dict(offsets=np.zeros((2, 2, 2, 3), np.float32)), r"offsets must have shape \[2, 2, 2, 2\]"),
    (dict(offsets=np.zeros((3, 2, 2, 2), np.float32)), r"offsets must have shape \[2, 2, 2, 2\]"),
    (dict(mask=np.zeros((2, 2, 2, 2), np.float32)), r"mask must have shape \[2, 2, 2, 1\]"),
    (dict(mask=np.zeros((2, 2, 1), np.float32)), r"mask must have shape \[2, 2, 2, 1\]"),
])
def test_kernel_checks_shapes_unknown_to_the_graph(arguments, pattern):
    unknown = tf.TensorSpec(None, tf.float32)

    @tf.function(input_signature=[unknown] * 4)
    def run(features, rois, offsets, mask):
        return lib.dcn_deform_roi_pool(features, rois, offsets, mask, output_size=[2, 2])

    inputs = dict(features=FEATURES, rois=ROIS, offsets=np.zeros((2, 2, 2, 2), np.float32),
                  mask=np.ones((2, 2, 2, 1), np.float32))
    inputs.update(arguments)
    with pytest.raises(InvalidArgumentError, match=pattern):
        run(**inputs)


def test_grad_kernel_checks_output_grad():
    unknown = tf.TensorSpec(None, tf.float32)

    @tf.function(input_signature=[unknown] * 5)
    def run(features, rois, offsets, mask, output_grad):
        return lib.dcn_deform_roi_pool_grad(features, rois, offsets, mask, output_grad,
                                            output_size=[2, 2])

    args = (FEATURES, ROIS, np.zeros((2, 2, 2, 2), np.float32), np.ones((2, 2, 2, 1), np.float32))
    with pytest.raises(InvalidArgumentError, match=r"output_grad must have shape \[2, 2, 2, 3\]"):
        run(*args, np.zeros((2, 2, 2, 4), np.float32))
    features_grad, offsets_grad, mask_grad = run(*args, np.ones((2, 2, 2, 3), np.float32))
    assert features_grad.shape == (2, 6, 6, 3)
    assert offsets_grad.shape == (2, 2, 2, 2) and mask_grad.shape == (2, 2, 2, 1)


def test_huge_output_size_fails_cleanly():
    # Not even one RoI's offsets fit in a tensor.
    with pytest.raises(ValueError, match=r"output_size \(3, 4611686018427387904\) is too large"):
        deform_roi_pool(FEATURES, ROIS, output_size=(3, 2 ** 62))
    # One RoI's do, not those of all of them.
    with pytest.raises(InvalidArgumentError, match="more than 2\\*\\*63 - 1 elements"):
        deform_roi_pool(FEATURES, ROIS, output_size=(2 ** 30, 2 ** 31))
    # Nothing to allocate without RoIs.
    out = deform_roi_pool(FEATURES, np.zeros((0, 5), np.float32), output_size=(2 ** 30, 2 ** 31))
    assert out.shape == (0, 2 ** 30, 2 ** 31, 3)
