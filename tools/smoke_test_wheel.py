"""Checks an installed keras-dcn: a forward and a backward pass of both ops and both
layers, each against a value computed another way.

Run it with the Python of an environment holding only TensorFlow and the package
(tools/test_wheel.sh does), from outside the source tree so that the installed
package is the one imported:

    python tools/smoke_test_wheel.py
"""

import importlib.metadata
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_dcn  # noqa: E402
from keras_dcn import _library  # noqa: E402

RNG = np.random.default_rng(0)


def close(name, actual, expected, tol=1e-4):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    error = float(np.max(np.abs(actual - expected), initial=0.0))
    scale = float(np.max(np.abs(expected), initial=1.0))
    assert error <= tol * scale, f"{name}: max error {error:.3g} (scale {scale:.3g})"
    print(f"  ok  {name} (max error {error:.1e})")


def random(*shape, dtype="float32"):
    return tf.constant(RNG.standard_normal(shape), dtype)


def ramp(height, width, slopes):
    """Features [1, H, W, C] with channel c equal to a_c * y + b_c * x + c_c: bilinear
    sampling and bin averages of it are exact, so RoI pooling has closed forms."""
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return tf.constant(np.stack([a * y + b * x + c for a, b, c in slopes], -1)[None],
                       tf.float32)


def check_deform_conv2d():
    """Zero offsets and a mask of ones make it tf.nn.conv2d, forward and backward; the
    offset gradient matches central differences (float64, off the integer grid)."""
    x, kernel, weights = random(2, 9, 9, 4), random(3, 3, 4, 5), random(2, 9, 9, 5)
    offsets, mask = tf.zeros([2, 9, 9, 18]), tf.ones([2, 9, 9, 9])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        dcn_output = keras_dcn.ops.deform_conv2d(x, offsets, kernel, mask, padding="same")
        conv_output = tf.nn.conv2d(x, kernel, 1, "SAME")
        dcn, conv = (tf.reduce_sum(weights * y) for y in (dcn_output, conv_output))
    close("deform_conv2d forward = conv2d", dcn_output, conv_output)
    for name, dcn_grad, conv_grad in zip(("inputs", "kernel"),
                                         tape.gradient(dcn, [x, kernel]),
                                         tape.gradient(conv, [x, kernel])):
        close(f"deform_conv2d gradient of {name} = conv2d's", dcn_grad, conv_grad)

    x, kernel = random(1, 6, 6, 2, dtype="float64"), random(3, 3, 2, 3, dtype="float64")
    signs = RNG.choice([-1.0, 1.0], [1, 4, 4, 18])
    offsets = tf.constant(RNG.uniform(0.1, 0.4, [1, 4, 4, 18]) * signs)
    mask = tf.constant(RNG.uniform(0.2, 1.0, [1, 4, 4, 9]))

    def loss(offsets):
        return tf.reduce_sum(keras_dcn.ops.deform_conv2d(x, offsets, kernel, mask) ** 2)

    with tf.GradientTape() as tape:
        tape.watch(offsets)
        value = loss(offsets)
    gradient = tape.gradient(value, offsets).numpy().ravel()
    step, numeric = 1e-6, []
    picks = RNG.choice(gradient.size, 6, replace=False)
    for index in picks:
        delta = np.zeros(gradient.size)
        delta[index] = step
        delta = tf.constant(delta.reshape(offsets.shape))
        numeric.append((loss(offsets + delta) - loss(offsets - delta)).numpy() / (2 * step))
    close("deform_conv2d offset gradient = central differences", gradient[picks], numeric,
          tol=1e-5)


def check_deform_roi_pool():
    """On ramp features, bins average to the ramp at their centres, an offset dy moves
    a bin by gamma * roi_h * dy, and each output spreads weight 1 over the features."""
    slopes = [(0.5, -0.25, 1.0), (-1.0, 2.0, 3.0)]
    features = ramp(16, 20, slopes)
    rois = tf.constant([[0, 2.0, 3.0, 14.0, 11.0], [0, 5.0, 1.5, 9.0, 13.5]])
    offsets = tf.zeros([2, 3, 3, 2])
    with tf.GradientTape() as tape:
        tape.watch([features, offsets])
        pooled = keras_dcn.ops.deform_roi_pool(features, rois, offsets, output_size=3)
        total = tf.reduce_sum(pooled)
    feature_grad, offset_grad = tape.gradient(total, [features, offsets])

    expected = np.zeros([2, 3, 3, 2])
    offset_expected = np.zeros([2, 3, 3, 2])
    for r, (_, x1, y1, x2, y2) in enumerate(rois.numpy()):
        height, width = y2 - y1, x2 - x1
        for ph in range(3):
            for pw in range(3):
                y = y1 - 0.5 + (ph + 0.5) * height / 3
                x = x1 - 0.5 + (pw + 0.5) * width / 3
                expected[r, ph, pw] = [a * y + b * x + c for a, b, c in slopes]
                offset_expected[r, ph, pw] = [0.1 * height * sum(s[0] for s in slopes),
                                              0.1 * width * sum(s[1] for s in slopes)]
    close("deform_roi_pool forward = ramp at bin centres", pooled, expected)
    close("deform_roi_pool offset gradient = gamma * roi size * slope", offset_grad,
          offset_expected)
    close("deform_roi_pool feature gradient sums to the number of outputs",
          tf.reduce_sum(feature_grad, [0, 1, 2]), [2 * 3 * 3] * 2)


def check_deform_conv2d_layer():
    """A fresh DCNv1 layer with a Conv2D's weights is that Conv2D, forward and in the
    gradients of the shared weights; its offset branch gets a gradient too."""
    x, weights = random(2, 10, 10, 3), random(2, 10, 10, 4)
    conv = keras.layers.Conv2D(4, 3, padding="same")
    layer = keras_dcn.layers.DeformConv2D(4, 3, padding="same", modulated=False)
    conv.build(x.shape)
    layer.build(x.shape)
    layer.kernel.assign(conv.kernel)
    layer.bias.assign(conv.bias)
    with tf.GradientTape(persistent=True) as tape:
        dcn_output, conv_output = layer(x), conv(x)
        dcn, regular = (tf.reduce_sum(weights * y) for y in (dcn_output, conv_output))
    close("DeformConv2D forward = Conv2D", dcn_output, conv_output)
    dcn_grads = tape.gradient(dcn, [layer.kernel, layer.bias, layer.offset_kernel])
    conv_grads = tape.gradient(regular, [conv.kernel, conv.bias])
    close("DeformConv2D kernel gradient = Conv2D's", dcn_grads[0], conv_grads[0])
    close("DeformConv2D bias gradient = Conv2D's", dcn_grads[1], conv_grads[1])
    assert np.all(np.isfinite(dcn_grads[2])) and np.any(dcn_grads[2] != 0)
    print("  ok  DeformConv2D offset branch gradient finite and non-zero")


def check_deform_roi_pool_layer():
    """A fresh DCNv2 layer is RoIAlign times 0.5; every weight of its branch gets a
    finite gradient, and the zero-initialised last layer a non-zero one."""
    features = ramp(12, 12, [(0.3, 0.1, 0.0), (-0.2, 0.4, 1.0), (0.0, 0.0, 2.0)])
    rois = tf.constant([[0, 1.0, 1.0, 9.0, 10.0], [0, 3.0, 2.0, 7.0, 6.0]])
    layer = keras_dcn.layers.DeformRoIPool(output_size=2, hidden_units=32)
    weights = random(2, 2, 2, 3)
    with tf.GradientTape() as tape:
        pooled = layer(features, rois)
        total = tf.reduce_sum(weights * pooled)
    close("DeformRoIPool forward = RoIAlign x 0.5", pooled,
          0.5 * keras_dcn.ops.deform_roi_pool(features, rois, output_size=2))
    grads = dict(zip((w.name for w in layer.trainable_weights),
                     tape.gradient(total, layer.trainable_weights)))
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads.values()), grads
    assert np.any(grads["offset_kernel"] != 0)
    print(f"  ok  DeformRoIPool gradients of {len(grads)} weights finite, "
          "the zero-initialised offset_kernel's non-zero")


def main():
    keras.utils.set_random_seed(0)  # the layers' initial weights
    info = _library.build_info()
    print(f"keras_dcn {keras_dcn.__version__} from {os.path.dirname(keras_dcn.__file__)}")
    print(f"requires {importlib.metadata.requires('keras-dcn')}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; library {info}, "
          f"CPU products: {_library.cpu_isa()}")
    for check in (check_deform_conv2d, check_deform_roi_pool, check_deform_conv2d_layer,
                  check_deform_roi_pool_layer):
        print(check.__name__)
        check()
    print("all checks passed")


if __name__ == "__main__":
    main()
