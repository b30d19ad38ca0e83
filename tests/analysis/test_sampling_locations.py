"""keras_dcn.analysis.sampling_locations: on small hand-built models whose sampling
points are known (fixed offsets from the branch's bias), the effective sampling / bin
locations are exactly those points, the weights are the norms of the one-sided
finite-difference derivatives of the node with respect to each point (per image
pixel), and points outside the node's dependency cone weigh 0."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from keras_dcn import analysis
from keras_dcn import tf_keras as tfk_layers
from keras_dcn.layers import DeformConv2D, DeformRoIPool

EPS = 1e-6


def _fix_offsets(layer, offsets, mask_logits=None):
    """Makes the layer's branch output constants: offsets `[2 * K]` (and mask logits)."""
    layer.offset_kernel.assign(np.zeros(layer.offset_kernel.shape))
    bias = list(offsets) + (list(mask_logits) if mask_logits is not None else [])
    layer.offset_bias.assign(np.asarray(bias, np.float64))


def _sum(node, image):
    return float(np.sum(node(image[None])))


def _moved(layer, index, step):
    """A hook adding `step` to offsets[index]."""
    def hook(hooked, inputs, offsets, mask, rois):
        delta = np.zeros(offsets.shape)
        delta[index] = step
        return offsets + delta, mask
    return hook


def _derivative(node, image, layer, index):
    """One-sided (right-hand) derivative of the node's sum with respect to offsets[index]."""
    base = _sum(node, image)
    with analysis.sampling_hook([layer], _moved(layer, index, EPS)):
        moved = _sum(node, image)
    return (moved - base) / EPS


def _tf_same_pad_before(size, kernel, stride):
    out = -(-size // stride)
    return max((out - 1) * stride + kernel - size, 0) // 2


@pytest.mark.parametrize("zero_offsets", [False, True])
def test_single_deformable_conv_points_are_its_taps(zero_offsets, rng):
    height, width, row, col = 11, 12, 2, 3
    inputs = keras.Input((height, width, 2), dtype="float64")
    layer = DeformConv2D(3, 3, strides=2, padding="same", dtype="float64", name="dcn")
    model = keras.Model(inputs, layer(inputs))
    offsets = np.zeros(18) if zero_offsets else rng.uniform(-0.9, 0.9, 18)
    _fix_offsets(layer, offsets, rng.standard_normal(9))
    image = rng.standard_normal((height, width, 2))
    node = analysis.spatial_node(model, "dcn", (row, col))

    (result,) = analysis.effective_sampling_locations(node, image, [layer])
    assert result.layer == "dcn" and result.kind == "conv" and result.stride == (1.0, 1.0)
    assert result.points.shape == (6, 6, 9, 2) and result.weights.shape == (6, 6, 9)
    top = _tf_same_pad_before(height, 3, 2)
    left = _tf_same_pad_before(width, 3, 2)
    taps = np.array([(row * 2 - top + i + offsets[2 * (3 * i + j)],
                      col * 2 - left + j + offsets[2 * (3 * i + j) + 1])
                     for i in range(3) for j in range(3)])
    points, weights = result.support()
    assert len(points) == 9
    np.testing.assert_allclose(result.points[row, col], taps, atol=1e-12)
    np.testing.assert_allclose(points, taps, atol=1e-12)
    others = np.ones((6, 6), bool)
    others[row, col] = False
    assert not result.weights[others].any()

    for k in range(9):
        gy = _derivative(node, image, layer, (0, row, col, 2 * k))
        gx = _derivative(node, image, layer, (0, row, col, 2 * k + 1))
        assert result.weights[row, col, k] == pytest.approx(np.hypot(gy, gx), rel=1e-4,
                                                            abs=1e-6)


def test_stacked_layers_tf_keras_cone_and_strides(rng):
    inputs = tf_keras.Input((16, 16, 2), dtype="float64")
    stem = tf_keras.layers.AveragePooling2D(2, dtype="float64")  # input stride 2
    first = tfk_layers.DeformConv2D(3, 3, padding="same", modulated=False,
                                    dtype="float64", name="first")
    second = tfk_layers.DeformConv2D(2, 3, padding="same", dtype="float64", name="second")
    model = tf_keras.Model(inputs, second(tf.nn.tanh(first(stem(inputs)))))
    _fix_offsets(first, rng.uniform(-0.7, 0.7, 18))
    _fix_offsets(second, rng.uniform(-0.7, 0.7, 18), rng.standard_normal(9))
    image = rng.standard_normal((16, 16, 2))
    row, col = 4, 3
    node = analysis.spatial_node(model, second, (row, col))

    results = analysis.effective_sampling_locations(
        node, image, analysis.deformable_layers(model))
    assert [r.layer for r in results] == ["first", "second"]
    first_result, second_result = results
    assert first_result.stride == (2.0, 2.0) and second_result.stride == (2.0, 2.0)

    # The second layer's taps read the first's outputs around these points: only
    # those output positions (the four neighbours of each tap) are in the cone.
    feature_taps = second_result.points[row, col]
    feature_taps = (feature_taps + 0.5) / 2.0 - 0.5  # back to feature pixels
    cone = np.zeros((8, 8), bool)
    for y, x in feature_taps:
        cone[int(np.floor(y)):int(np.floor(y)) + 2, int(np.floor(x)):int(np.floor(x)) + 2] \
            = True
    reached = first_result.weights.any(axis=-1)
    assert reached.any() and not (reached & ~cone).any()

    # Points in image pixels and weights per image pixel (the input stride is 2).
    positions = np.argwhere(reached)
    for y, x in positions[rng.choice(len(positions), 3, replace=False)]:
        k = int(rng.integers(9))
        feature_point = (np.array([y, x]) - 1 + [k // 3, k % 3]
                         + first.offset_bias.numpy()[2 * k:2 * k + 2])
        np.testing.assert_allclose(first_result.points[y, x, k],
                                   (feature_point + 0.5) * 2 - 0.5, atol=1e-12)
        gy = _derivative(node, image, first, (0, y, x, 2 * k))
        gx = _derivative(node, image, first, (0, y, x, 2 * k + 1))
        assert first_result.weights[y, x, k] == pytest.approx(np.hypot(gy, gx) / 2,
                                                              rel=1e-4, abs=1e-6)


def test_roi_pool_bins_are_the_moved_bin_centres(rng):
    gamma, output = 0.2, (2, 3)
    inputs = keras.Input((20, 24, 3), dtype="float64")
    pool = DeformRoIPool(output_size=output, spatial_scale=0.5, gamma=gamma,
                         hidden_units=4, dtype="float64", name="pool")
    features = keras.layers.AveragePooling2D(2, dtype="float64")(inputs)  # stride 2
    rois = np.array([[0, 4.0, 2.0, 18.0, 15.0], [0, 1.0, 1.0, 9.0, 9.0]], "float32")
    model = keras.Model(inputs, features)
    offsets = rng.uniform(-0.5, 0.5, 2 * 6)
    pool.build((1, 10, 12, 3))
    _fix_offsets(pool, offsets, rng.standard_normal(6))

    def node(images):
        return pool(model(images), rois)[0]  # RoI 0 only

    image = rng.standard_normal((20, 24, 3))
    (result,) = analysis.effective_sampling_locations(node, image, [pool])
    assert result.kind == "roi" and result.points.shape == (2, 2, 3, 2)
    assert result.stride == (2.0, 2.0)
    assert not result.weights[1].any()  # RoI 1 does not feed the node

    # Aligned RoI 0 on the stride-2 map: y from 2 * 0.5 - 0.5, height 6.5, ...
    y0, x0, h, w = 2.0 * 0.5 - 0.5, 4.0 * 0.5 - 0.5, 6.5, 7.0
    dy, dx = offsets[0::2].reshape(output), offsets[1::2].reshape(output)
    ph, pw = np.meshgrid(np.arange(2), np.arange(3), indexing="ij")
    centre_y = y0 + (ph + 0.5) * h / 2 + gamma * h * dy
    centre_x = x0 + (pw + 0.5) * w / 3 + gamma * w * dx
    expected = (np.stack([centre_y, centre_x], -1) + 0.5) * 2 - 0.5
    np.testing.assert_allclose(result.points[0], expected, rtol=1e-6)

    for index in np.ndindex(*output):
        gy = _derivative(node, image, pool, (0, *index, 0)) / (gamma * h) / 2
        gx = _derivative(node, image, pool, (0, *index, 1)) / (gamma * w) / 2
        assert result.weights[(0, *index)] == pytest.approx(np.hypot(gy, gx), rel=1e-4,
                                                            abs=1e-7)


def test_bad_layers_and_hook_removal():
    conv = keras.layers.Conv2D(2, 3)
    with pytest.raises(ValueError, match="layers must hold DeformConv2D"):
        analysis.effective_sampling_locations(lambda x: x[0, 0, 0], np.zeros((4, 4, 1)),
                                              [conv])
    layer = DeformConv2D(2, 3, padding="same")
    with pytest.raises(RuntimeError):
        with analysis.sampling_hook([layer], lambda *args: args[2:4]):
            assert layer._sampling_hook is not None
            raise RuntimeError
    assert layer._sampling_hook is None

    frozen = DeformRoIPool(output_size=2, gamma=0.0, hidden_units=2)
    boxes = np.array([[0, 0.0, 0.0, 3.0, 3.0]], "float32")
    with pytest.raises(ValueError, match="gamma 0"):
        analysis.effective_sampling_locations(
            lambda images: frozen(images, boxes), np.ones((4, 4, 1)), [frozen])
