"""keras_dcn.ops.deform_conv2d: values and gradients against the plain-TensorFlow
reference (tests/reference.py), numerical Jacobians, the border-gradient rule,
equivalences with regular convolutions, unknown shapes, empty batches, non-finite
values and every bad argument."""

import dataclasses
import math
import os
import pathlib
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_dcn import _library
from keras_dcn._library import ops as lib
from keras_dcn.ops import deform_conv2d
from tests import reference

InvalidArgumentError = tf.errors.InvalidArgumentError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Largest error allowed, relative to the largest magnitude of the expected tensor.
# Half types are compared with the float64 reference computed from the same rounded
# inputs, so what remains is the rounding of the result (and float32 accumulation):
# a few times half a unit in the last place.
TOLERANCE = {
    tf.float64: 1e-12,
    tf.float32: 1e-5,
    tf.float16: 2e-3,
    tf.bfloat16: 1e-2,
}
ALL_DTYPES = [pytest.param(dtype, id=dtype.name) for dtype in TOLERANCE]
DATA_FORMATS = ["channels_last", "channels_first"]
TENSOR_NAMES = ("inputs", "offsets", "kernel", "mask", "bias")
# Tensors laid out as [N, H, W, C] or [N, C, H, W] depending on data_format.
IMAGE_LIKE = ("inputs", "offsets", "mask")


# ----------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: every test draws its own, reproducible data."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def resolve_padding(padding, size, kernel_size, strides, dilations):
    """(top, bottom, left, right) of any accepted form of `padding`.

    "same" follows TensorFlow: ceil(size / stride) outputs, and the odd pixel of an
    odd total padding goes to the bottom / right.
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        pads = []
        for n, k, s, d in zip(size, kernel_size, strides, dilations):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    if isinstance(padding, int):
        return (padding,) * 4
    if all(isinstance(p, int) for p in padding):
        return (padding[0], padding[0], padding[1], padding[1])
    (top, bottom), (left, right) = padding
    return (top, bottom, left, right)


def output_size(size, kernel_size, strides, dilations, pads):
    """(Ho, Wo) for (top, bottom, left, right) padding."""
    return tuple(
        (n + before + after - (k - 1) * d - 1) // s + 1
        for n, k, s, d, before, after in zip(
            size, kernel_size, strides, dilations, pads[0::2], pads[1::2]))


@dataclasses.dataclass
class Case:
    """One call of the op, every tensor float64 and channels last."""

    inputs: np.ndarray
    offsets: np.ndarray
    kernel: np.ndarray
    mask: np.ndarray | None
    bias: np.ndarray | None
    strides: object  # as the op is given them: an int or a pair
    padding: object
    dilation_rate: object
    groups: int
    deformable_groups: int
    pads: tuple

    def tensors(self):
        """The tensors the op takes, without the absent mask / bias."""
        return {name: getattr(self, name) for name in TENSOR_NAMES
                if getattr(self, name) is not None}

    @property
    def stride_pair(self):
        return pair(self.strides)

    @property
    def dilation_pair(self):
        return pair(self.dilation_rate)

    def op_kwargs(self):
        return dict(strides=self.strides, padding=self.padding,
                    dilation_rate=self.dilation_rate, groups=self.groups,
                    deformable_groups=self.deformable_groups)

    def reference_kwargs(self):
        return dict(strides=self.stride_pair, pads=self.pads, dilations=self.dilation_pair,
                    groups=self.groups, deformable_groups=self.deformable_groups)

    @property
    def output_shape(self):
        return self.offsets.shape[:3] + self.kernel.shape[3:]


def make_case(rng, *, batch=2, size=(6, 5), channels=4, filters=6, kernel_size=(3, 3),
              strides=1, padding="valid", dilation_rate=1, groups=1,
              deformable_groups=1, mask=True, bias=True, offset_scale=2.0):
    """A random case. Offsets are normal with `offset_scale` pixels of spread, which on
    these small images sends many sampling points past the border."""
    kernel_size = pair(kernel_size)
    pads = resolve_padding(padding, size, kernel_size, pair(strides), pair(dilation_rate))
    out = output_size(size, kernel_size, pair(strides), pair(dilation_rate), pads)
    taps = deformable_groups * kernel_size[0] * kernel_size[1]
    return Case(
        inputs=rng.normal(size=(batch, *size, channels)),
        offsets=rng.normal(scale=offset_scale, size=(batch, *out, 2 * taps)),
        kernel=rng.normal(size=(*kernel_size, channels // groups, filters)),
        mask=rng.uniform(0.0, 1.0, size=(batch, *out, taps)) if mask else None,
        bias=rng.normal(size=(filters,)) if bias else None,
        strides=strides, padding=padding, dilation_rate=dilation_rate, groups=groups,
        deformable_groups=deformable_groups, pads=pads)


def sampling_points(case):
    """(y, x) of every sampling point, each [N, Ho, Wo, dg, kh, kw], from the API's formula."""
    n, ho, wo = case.offsets.shape[:3]
    kh, kw = case.kernel.shape[:2]
    off = case.offsets.reshape(n, ho, wo, case.deformable_groups, kh, kw, 2)
    (sh, sw), (dh, dw) = case.stride_pair, case.dilation_pair
    base_y = (np.arange(ho) * sh - case.pads[0])[:, None, None, None, None] \
        + (np.arange(kh) * dh)[:, None]
    base_x = (np.arange(wo) * sw - case.pads[2])[:, None, None, None] + np.arange(kw) * dw
    return base_y + off[..., 0], base_x + off[..., 1]


def to_layout(name, value, data_format):
    if data_format == "channels_first" and name in IMAGE_LIKE:
        return tf.transpose(value, [0, 3, 1, 2])
    return value


def from_layout(name, value, data_format):
    if data_format == "channels_first" and name in IMAGE_LIKE:
        return tf.transpose(value, [0, 2, 3, 1])
    return value


def rounded(tensors, dtype):
    """`tensors` (NumPy arrays) as tensors of `dtype`."""
    return {name: tf.cast(tf.constant(value, tf.float64), dtype)
            for name, value in tensors.items()}


def op_with_grads(case, upstream, dtype=tf.float64, data_format="channels_last",
                  tensors=None):
    """Output and the gradients of sum(upstream * output), as float64 NumPy arrays in
    channels-last layout. `tensors` overrides the case's values (already in `dtype`)."""
    tensors = tensors if tensors is not None else rounded(case.tensors(), dtype)
    fed = {name: to_layout(name, value, data_format) for name, value in tensors.items()}
    with tf.GradientTape() as tape:
        tape.watch(fed)
        output = deform_conv2d(**fed, data_format=data_format, **case.op_kwargs())
    grads = tape.gradient(output, fed, output_gradients=to_layout(
        "inputs", tf.cast(upstream, dtype), data_format))
    as_array = lambda name, t: tf.cast(from_layout(name, t, data_format), tf.float64).numpy()
    return as_array("inputs", output), {name: as_array(name, g) for name, g in grads.items()}


def reference_with_grads(case, upstream, dtype=tf.float64, tensors=None):
    """Reference output and gradients in float64, from the values rounded to `dtype`."""
    tensors = tensors if tensors is not None else rounded(case.tensors(), dtype)
    tensors = {name: tf.cast(value, tf.float64) for name, value in tensors.items()}
    upstream = tf.cast(tf.cast(upstream, dtype), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        output = reference.deform_conv2d(**tensors, **case.reference_kwargs())
    grads = tape.gradient(output, tensors, output_gradients=upstream)
    return output.numpy(), {name: g.numpy() for name, g in grads.items()}


def assert_close(got, want, dtype=tf.float64, what=""):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-8)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype] * scale,
                               err_msg=what)


def assert_matches_reference(case, dtype=tf.float64, data_format="channels_last", rng=None):
    upstream = (rng or np.random.default_rng(0)).normal(size=case.output_shape)
    tensors = rounded(case.tensors(), dtype)
    got, got_grads = op_with_grads(case, upstream, dtype, data_format, tensors)
    want, want_grads = reference_with_grads(case, upstream, dtype, tensors)
    assert_close(got, want, dtype, "output")
    assert set(got_grads) == set(case.tensors())
    for name in got_grads:
        assert_close(got_grads[name], want_grads[name], dtype, f"gradient of {name}")


def zeros(*shape, dtype=tf.float32):
    return tf.zeros(shape, dtype)


# ----------------------------------------------------------------------------------
# 1. Values and gradients against the reference


GRID = [
    pytest.param(dict(), id="valid"),
    pytest.param(dict(padding="same"), id="same"),
    # 7 rows at stride 2 pad (1, 1); 6 columns pad (0, 1): the odd pixel at the right.
    pytest.param(dict(size=(7, 6), padding="same", strides=2), id="same_stride2_odd"),
    pytest.param(dict(size=(7, 8), padding="same", strides=(2, 1), dilation_rate=(1, 2)),
                 id="same_asymmetric_stride_dilation"),
    pytest.param(dict(kernel_size=(2, 3), padding="same"), id="same_even_kernel"),
    pytest.param(dict(padding=1), id="int_padding"),
    pytest.param(dict(padding=(2, 1)), id="pair_padding"),
    pytest.param(dict(padding=((0, 2), (1, 0))), id="explicit_padding"),
    pytest.param(dict(size=(9, 8), strides=(2, 3), dilation_rate=(2, 1), padding=1),
                 id="strides_dilations_pairs"),
    pytest.param(dict(strides=2, dilation_rate=2, padding=2, size=(8, 7)),
                 id="strides_dilations_ints"),
    pytest.param(dict(groups=2), id="groups"),
    pytest.param(dict(deformable_groups=2), id="deformable_groups"),
    # Conv groups of 4 channels and deformable groups of 6: boundaries do not line up.
    pytest.param(dict(channels=12, filters=6, groups=3, deformable_groups=2),
                 id="groups3_dg2_misaligned"),
    pytest.param(dict(channels=12, filters=8, groups=4, deformable_groups=3),
                 id="groups4_dg3_misaligned"),
    pytest.param(dict(channels=5, filters=7), id="odd_channels_filters"),
    pytest.param(dict(kernel_size=1), id="kernel_1x1"),
    pytest.param(dict(kernel_size=(2, 3), padding=((1, 0), (1, 1))), id="kernel_2x3"),
    pytest.param(dict(size=(7, 7), kernel_size=5, padding=2), id="kernel_5x5"),
    pytest.param(dict(mask=False), id="no_mask"),
    pytest.param(dict(bias=False), id="no_bias"),
    pytest.param(dict(mask=False, bias=False, groups=2, deformable_groups=2),
                 id="no_mask_no_bias_groups"),
]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("config", GRID)
def test_matches_reference(config, dtype, data_format, rng):
    case = make_case(rng, **config)
    y, x = sampling_points(case)
    outside = (y <= -1) | (y >= case.inputs.shape[1]) | (x <= -1) | (x >= case.inputs.shape[2])
    assert outside.any() and not outside.all()  # both kinds of sampling points occur
    assert_matches_reference(case, dtype, data_format, rng)


MANY_TILES = [
    pytest.param(dict(channels=48, filters=8, groups=2, deformable_groups=3),
                 id="groups_deformable_groups"),
    # 40 filters: a second, partly filled panel of the packed kernel; 5 channels: an
    # odd product depth (9 * 5), so bfloat16 pairs end with a lone value.
    pytest.param(dict(channels=5, filters=40), id="wide_odd_depth"),
]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("config", MANY_TILES)
def test_matches_reference_over_many_tiles(config, dtype, rng):
    """Enough output pixels and channels that the work is split into several row
    blocks and micro-kernel tiles (with partial ones at every edge)."""
    case = make_case(rng, batch=2, size=(34, 33), padding=1, offset_scale=3.0, **config)
    assert_matches_reference(case, dtype, rng=rng)


@pytest.mark.parametrize("isa", ["generic", "avx512"])
def test_capped_cpu_isa_matches_reference(isa):
    """The products without the micro-kernels (Eigen's), and without the bfloat16 ones,
    run the same checks in a process whose KERAS_DCN_MAX_CPU_ISA caps the choice."""
    env = dict(os.environ, **{_library.CPU_ISA_ENV: isa})
    check = subprocess.run(
        [sys.executable, "-c", "from keras_dcn import _library; print(_library.cpu_isa())"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert _library.CPU_ISAS.index(check.stdout.split()[-1]) <= _library.CPU_ISAS.index(isa)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "over_many_tiles or odd_channels"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:]


# ----------------------------------------------------------------------------------
# 2. Numerical Jacobians


def fractional_offsets(rng, shape):
    """Offsets whose fractional parts stay in [0.1, 0.9]: with integer base positions no
    sampling point is near an integer coordinate, where interpolation has a kink."""
    return rng.integers(-2, 3, size=shape) + rng.uniform(0.1, 0.9, size=shape)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("wrt", TENSOR_NAMES)
def test_numerical_jacobian(wrt, data_format, rng):
    case = make_case(rng, batch=1, size=(4, 5), channels=4, filters=4, kernel_size=(2, 3),
                     strides=(1, 2), padding=((1, 0), (1, 1)), dilation_rate=(2, 1),
                     groups=2, deformable_groups=2)
    case.offsets = fractional_offsets(rng, case.offsets.shape)
    tensors = {name: to_layout(name, tf.constant(value), data_format)
               for name, value in case.tensors().items()}

    def f(value):
        return deform_conv2d(**{**tensors, wrt: value}, data_format=data_format,
                             **case.op_kwargs())

    theoretical, numerical = tf.test.compute_gradient(f, [tensors[wrt]], delta=1e-3)
    scale = np.max(np.abs(numerical[0]))
    assert scale > 0
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=0, atol=1e-7 * scale)


# ----------------------------------------------------------------------------------
# 3. The border-gradient rule at zero offsets


def test_zero_offsets_border_rule_and_right_hand_derivative(rng):
    """Offsets 0 and padding 1: taps at y or x = -1 or = H / W read 0 and get exactly zero
    offset and mask gradients; taps on interior integers get the right-hand derivative."""
    case = make_case(rng, batch=1, size=(4, 4), channels=2, filters=3, padding=1,
                     offset_scale=0.0, bias=False)
    case.mask = rng.uniform(0.5, 1.5, size=case.mask.shape)
    upstream = rng.normal(size=case.output_shape)
    height, width = case.inputs.shape[1:3]
    y, x = sampling_points(case)
    outside = ((y <= -1) | (y >= height) | (x <= -1) | (x >= width)).reshape(-1)
    assert outside.any() and not outside.all()

    _, grads = op_with_grads(case, upstream)
    offsets_grad = grads["offsets"].reshape(-1, 2)  # one row per tap: (d/dy, d/dx)
    mask_grad = grads["mask"].reshape(-1)
    np.testing.assert_array_equal(offsets_grad[outside], 0.0)
    np.testing.assert_array_equal(mask_grad[outside], 0.0)

    # Border taps read 0: their mask value does not matter.
    base = deform_conv2d(case.inputs, case.offsets, case.kernel, case.mask,
                         **case.op_kwargs())
    bigger = case.mask.reshape(-1).copy()
    bigger[outside] = 1e6
    changed = deform_conv2d(case.inputs, case.offsets, case.kernel,
                            bigger.reshape(case.mask.shape), **case.op_kwargs())
    np.testing.assert_array_equal(changed.numpy(), base.numpy())

    # One-sided differences, all at once: batch element e moves offset element e by h.
    # Interpolation is linear between integers, so h = 0.25 gives exact slopes.
    h = 0.25
    count = case.offsets.size
    loss = lambda out: tf.reduce_sum(out * upstream[0], axis=[1, 2, 3]).numpy()

    def moved(step):
        offsets = np.repeat(case.offsets, count, axis=0)
        offsets.reshape(count, count)[np.arange(count), np.arange(count)] += step
        return loss(deform_conv2d(np.repeat(case.inputs, count, axis=0), offsets,
                                  case.kernel, np.repeat(case.mask, count, axis=0),
                                  **case.op_kwargs()))

    at = loss(deform_conv2d(case.inputs, case.offsets, case.kernel, case.mask,
                            **case.op_kwargs()))
    right = ((moved(h) - at) / h).reshape(-1, 2)
    left = ((at - moved(-h)) / h).reshape(-1, 2)
    inside = ~outside
    scale = np.max(np.abs(right[inside]))
    np.testing.assert_allclose(offsets_grad[inside], right[inside], rtol=0, atol=1e-12 * scale)
    # Where the two one-sided slopes differ, the gradient is not the left-hand one.
    kinked = np.abs(left[inside] - right[inside]) > 1e-3 * scale
    assert kinked.any()
    assert np.all(np.abs(offsets_grad[inside][kinked] - left[inside][kinked]) > 1e-4 * scale)
    # And the rule is a choice: entering the image from y = -1 does change the output.
    assert np.any(right[outside] != 0.0)


# ----------------------------------------------------------------------------------
# 4. Equivalences with regular convolutions


def conv2d(case, inputs=None, padding=None):
    """tf.nn.conv2d of the case (NHWC, grouped when the kernel is), plus its bias."""
    if padding is None:
        padding = "SAME" if case.padding == "same" else [
            [0, 0], list(case.pads[:2]), list(case.pads[2:]), [0, 0]]
    out = tf.nn.conv2d(case.inputs if inputs is None else inputs, case.kernel,
                       strides=case.strides, padding=padding, dilations=case.dilation_rate)
    return out if case.bias is None else out + case.bias


def split_conv2d(inputs, kernel, bias, case):
    """The grouped, dilated convolution of the case from undilated, ungrouped
    tf.nn.conv2d calls, whose CPU gradients TensorFlow supports: one call per group,
    and the dilation as zeros inserted between the kernel taps."""
    kh, kw, cg, filters = kernel.shape
    dh, dw = case.dilation_pair
    spread = tf.pad(tf.reshape(kernel, [kh, 1, kw, 1, cg, filters]),
                    [[0, 0], [0, dh - 1], [0, 0], [0, dw - 1], [0, 0], [0, 0]])
    spread = tf.reshape(spread, [kh * dh, kw * dw, cg, filters])[:(kh - 1) * dh + 1,
                                                                  :(kw - 1) * dw + 1]
    padding = [[0, 0], list(case.pads[:2]), list(case.pads[2:]), [0, 0]]
    out = tf.concat([
        tf.nn.conv2d(x, k, strides=case.strides, padding=padding)
        for x, k in zip(tf.split(inputs, case.groups, axis=3),
                        tf.split(spread, case.groups, axis=3))], axis=3)
    return out + bias


CONV_CASES = [
    pytest.param(dict(), id="valid"),
    pytest.param(dict(size=(7, 6), padding="same", strides=2), id="same_stride2"),
    pytest.param(dict(size=(6, 7), padding="same", kernel_size=(2, 3), dilation_rate=(2, 1)),
                 id="same_dilated_even_kernel"),
    pytest.param(dict(padding=((1, 2), (0, 1)), strides=(1, 2)), id="explicit_padding"),
    pytest.param(dict(padding=1, groups=2, filters=4), id="groups"),
    pytest.param(dict(padding=(1, 0), groups=4, filters=8, deformable_groups=2,
                      dilation_rate=(1, 2)), id="depthwise_dg2_dilated"),
]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("config", CONV_CASES)
def test_zero_offsets_without_mask_equal_conv2d(config, data_format, rng):
    case = make_case(rng, mask=False, offset_scale=0.0, **config)
    upstream = rng.normal(size=case.output_shape)
    got, grads = op_with_grads(case, upstream, data_format=data_format)
    assert_close(got, conv2d(case).numpy(), what="output")

    tensors = {name: tf.constant(case.tensors()[name]) for name in ("inputs", "kernel", "bias")}
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        want = split_conv2d(**tensors, case=case)
    want_grads = tape.gradient(want, tensors, output_gradients=upstream)
    assert_close(got, want.numpy(), what="output of the split convolution")
    for name, grad in want_grads.items():
        assert_close(grads[name], grad.numpy(), what=f"gradient of {name}")


def shifted(image, dy, dx, size):
    """out[n, y, x] = image[n, y + dy, x + dx] (0 outside the image); out has `size`
    rows and columns."""
    rows, cols = size
    margin = abs(dy) + abs(dx) + rows + cols
    padded = np.pad(image, [(0, 0), (margin, margin), (margin, margin), (0, 0)])
    return padded[:, margin + dy:margin + dy + rows, margin + dx:margin + dx + cols]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("shift", [(1, -2), (-3, 0), (0, 4), (2, 2), (9, 0)])
def test_uniform_integer_offsets_equal_conv_of_shifted_image(shift, data_format, rng):
    """Every tap moved by the same (dy, dx): a valid convolution of the zero-padded
    image moved by (dy, dx)."""
    case = make_case(rng, size=(7, 6), padding="same", strides=(1, 2), groups=2, mask=False)
    case.offsets = np.zeros_like(case.offsets)
    case.offsets[..., 0::2], case.offsets[..., 1::2] = shift
    got = deform_conv2d(*[to_layout(name, case.tensors()[name], data_format)
                          for name in ("inputs", "offsets", "kernel")],
                        bias=case.bias, data_format=data_format, **case.op_kwargs())
    top, bottom, left, right = case.pads
    (height, width), (dy, dx) = case.inputs.shape[1:3], shift
    canvas = shifted(case.inputs, dy - top, dx - left,
                     (height + top + bottom, width + left + right))
    want = conv2d(case, inputs=canvas, padding="VALID")
    assert_close(from_layout("inputs", got, data_format).numpy(), want.numpy())


def test_per_tap_integer_offsets_equal_sum_of_shifted_products(rng):
    """Each tap moved by its own integer (dy, dx): a check of the offset channel order
    that does not use the reference."""
    case = make_case(rng, size=(6, 7), channels=3, filters=4, kernel_size=(2, 3),
                     strides=(1, 2), padding=1, mask=False, bias=False)
    kh, kw = case.kernel.shape[:2]
    moves = rng.integers(-3, 4, size=(kh, kw, 2))
    case.offsets = np.broadcast_to(moves.reshape(-1), case.offsets.shape).copy()
    got = deform_conv2d(case.inputs, case.offsets, case.kernel, **case.op_kwargs())

    ho, wo = case.output_shape[1:3]
    (sh, sw), top, left = case.stride_pair, case.pads[0], case.pads[2]
    want = 0.0
    for i in range(kh):
        for j in range(kw):
            dy, dx = moves[i, j]
            image = shifted(case.inputs, i - top + dy, j - left + dx, (ho * sh, wo * sw))
            want = want + image[:, ::sh, ::sw] @ case.kernel[i, j]
    assert_close(got.numpy(), want)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_zero_mask_gives_bias_only(data_format, rng):
    case = make_case(rng, padding=1, groups=2, deformable_groups=2, offset_scale=1.0)
    case.mask = np.zeros_like(case.mask)
    upstream = rng.normal(size=case.output_shape)
    got, grads = op_with_grads(case, upstream, data_format=data_format)
    _, want_grads = reference_with_grads(case, upstream)
    np.testing.assert_array_equal(got, np.broadcast_to(case.bias, got.shape))
    for name in ("inputs", "offsets", "kernel"):
        np.testing.assert_array_equal(grads[name], 0.0, err_msg=name)
    assert_close(grads["bias"], upstream.sum(axis=(0, 1, 2)), what="bias gradient")
    assert np.any(grads["mask"] != 0)
    assert_close(grads["mask"], want_grads["mask"], what="mask gradient")


# ----------------------------------------------------------------------------------
# 5. Unknown shapes and tf.function


@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_unknown_shapes_match_eager(data_format, rng):
    channels, filters, kh, kw, dg = 4, 6, 3, 2, 2
    kwargs = dict(strides=(2, 1), padding="same", dilation_rate=(1, 2), groups=2,
                  deformable_groups=dg, data_format=data_format)

    def image_spec(c):
        return tf.TensorSpec([None, c, None, None] if data_format == "channels_first"
                             else [None, None, None, c], tf.float64)

    @tf.function(input_signature=[
        image_spec(channels), image_spec(2 * dg * kh * kw), image_spec(dg * kh * kw),
        tf.TensorSpec([kh, kw, channels // 2, filters], tf.float64),
        tf.TensorSpec([filters], tf.float64), image_spec(filters)])
    def graph(inputs, offsets, mask, kernel, bias, upstream):
        return run(inputs, offsets, mask, kernel, bias, upstream)

    def run(inputs, offsets, mask, kernel, bias, upstream):
        sources = [inputs, offsets, mask, kernel, bias]
        with tf.GradientTape() as tape:
            tape.watch(sources)
            output = deform_conv2d(inputs, offsets, kernel, mask, bias, **kwargs)
        return output, tape.gradient(output, sources, output_gradients=upstream)

    for batch, height, width in [(1, 5, 6), (2, 7, 4), (1, 1, 1)]:
        case = make_case(rng, batch=batch, size=(height, width), channels=channels,
                         filters=filters, kernel_size=(kh, kw), groups=2,
                         deformable_groups=dg, **{k: kwargs[k] for k in (
                             "strides", "padding", "dilation_rate")})
        args = [to_layout(name, tf.constant(case.tensors()[name]), data_format)
                for name in ("inputs", "offsets", "mask", "kernel", "bias")]
        upstream = to_layout("inputs", tf.constant(rng.normal(size=case.output_shape)),
                             data_format)
        want, want_grads = run(*args, upstream)
        got, got_grads = graph(*args, upstream)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        for g, w in zip(got_grads, want_grads):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert graph.experimental_get_tracing_count() == 1  # one graph served every size


# (input shape, offsets shape, kernel shape or None for unknown rank, arguments,
#  which output dimensions [N, Ho, Wo, filters] must be statically known)
STATIC_SHAPE_CASES = [
    pytest.param([2, 7, 5, 4], [2, 4, 3, 18], [3, 3, 4, 6],
                 dict(padding="same", strides=2), [True] * 4, id="same_strided"),
    pytest.param([2, 9, 8, 4], [2, 5, 7, 12], [2, 3, 2, 6],
                 dict(padding=((1, 2), (0, 1)), strides=(2, 1), dilation_rate=(2, 1),
                      groups=2), [True] * 4, id="explicit_dilated_grouped"),
    pytest.param([None, 7, 5, 4], [None, None, None, 18], [3, 3, 4, 6],
                 dict(padding="same", strides=2), [False, True, True, True],
                 id="unknown_batch"),
    pytest.param([2, None, 5, 4], [None, None, None, 18], [3, 3, 4, 6],
                 dict(), [True, False, True, True], id="unknown_height"),
    pytest.param([None, None, None, 4], [None, None, None, 18], [3, 3, 4, 6],
                 dict(padding=1), [False, False, False, True], id="unknown_image"),
    pytest.param([None, None, None, 4], [2, 7, 5, 18], [3, 3, 4, 6],
                 dict(padding=1), [True] * 4, id="known_from_offsets"),
    pytest.param([2, 7, 5, 4], [None, None, None, None], None,
                 dict(padding="same"), [True, False, False, False], id="unknown_kernel"),
]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("input_shape, offsets_shape, kernel_shape, kwargs, known",
                         STATIC_SHAPE_CASES)
def test_static_output_shape(input_shape, offsets_shape, kernel_shape, kwargs, known,
                             data_format):
    def layout(shape):
        if data_format == "channels_first" and shape is not None:
            return [shape[0], shape[3], shape[1], shape[2]]
        return shape

    spec = lambda shape: tf.TensorSpec(shape, tf.float32)
    fn = tf.function(lambda x, o, k: deform_conv2d(x, o, k, data_format=data_format, **kwargs))
    static = fn.get_concrete_function(
        spec(layout(input_shape)), spec(layout(offsets_shape)),
        spec(kernel_shape)).structured_outputs.shape
    assert [d is not None for d in static.as_list()] == layout(known)

    # The known dimensions are those of an eager call with the unknowns filled in.
    full_input = [d or f for d, f in zip(input_shape, [2, 7, 5, 4])]
    full_kernel = kernel_shape or [3, 3, 4, 6]
    pads = resolve_padding(kwargs.get("padding", "valid"), full_input[1:3], full_kernel[:2],
                           pair(kwargs.get("strides", 1)), pair(kwargs.get("dilation_rate", 1)))
    ho, wo = output_size(full_input[1:3], full_kernel[:2], pair(kwargs.get("strides", 1)),
                         pair(kwargs.get("dilation_rate", 1)), pads)
    full_offsets = [full_input[0], ho, wo, 2 * full_kernel[0] * full_kernel[1]]
    actual = deform_conv2d(zeros(*layout(full_input)), zeros(*layout(full_offsets)),
                           zeros(*full_kernel), data_format=data_format, **kwargs).shape
    assert static.is_compatible_with(actual)


# ----------------------------------------------------------------------------------
# 6. Empty batches and empty images


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("config", [
    pytest.param(dict(batch=0, padding=1, groups=2), id="empty_batch"),
    pytest.param(dict(batch=0, mask=False, bias=False, padding="same", strides=2),
                 id="empty_batch_no_mask"),
    pytest.param(dict(size=(0, 5), padding="same"), id="zero_height_same"),
])
def test_empty(config, data_format, rng):
    case = make_case(rng, **config)
    assert 0 in case.output_shape
    got, grads = op_with_grads(case, np.zeros(case.output_shape), data_format=data_format)
    assert got.shape == case.output_shape
    for name, value in case.tensors().items():
        assert grads[name].shape == value.shape, name
        np.testing.assert_array_equal(grads[name], 0.0, err_msg=name)


# ----------------------------------------------------------------------------------
# 7. Non-finite values


NON_FINITE = [np.nan, np.inf, -np.inf, 1e30, -1e30]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_non_finite_and_huge_offsets_read_zero(dtype, rng):
    """Offsets that are NaN, infinite or huge put the point outside the image: as if
    they were a far-away finite value."""
    case = make_case(rng, padding=1, groups=2, deformable_groups=2, offset_scale=1.0)
    chosen = rng.choice(case.offsets.size, case.offsets.size // 3, replace=False)
    bad, far = case.offsets.copy(), case.offsets.copy()
    bad.flat[chosen] = np.resize(NON_FINITE, chosen.size)
    far.flat[chosen] = 1e4
    upstream = rng.normal(size=case.output_shape)

    tensors = rounded(case.tensors(), dtype)
    got, got_grads = op_with_grads(case, upstream, dtype,
                                   tensors={**tensors, "offsets": tf.cast(bad, dtype)})
    want, want_grads = reference_with_grads(case, upstream, dtype,
                                            tensors={**tensors, "offsets": tf.cast(far, dtype)})
    assert np.all(np.isfinite(got))
    assert_close(got, want, dtype, "output")
    for name, grad in got_grads.items():
        assert np.all(np.isfinite(grad)), name
        assert_close(grad, want_grads[name], dtype, f"gradient of {name}")


@pytest.mark.parametrize("offset_scale", [0.0, 1.5])
def test_nan_pixel_only_reaches_outputs_that_sample_it(offset_scale, rng):
    case = make_case(rng, size=(6, 7), padding=1, offset_scale=offset_scale)
    poisoned = case.inputs.copy()
    poisoned[:, 0, 0, :] = np.nan
    upstream = rng.normal(size=case.output_shape)
    got, got_grads = op_with_grads(
        case, upstream, tensors={**rounded(case.tensors(), tf.float64),
                                 "inputs": tf.constant(poisoned)})
    clean = case.inputs.copy()
    clean[:, 0, 0, :] = 0.0
    want, want_grads = reference_with_grads(dataclasses.replace(case, inputs=clean), upstream)

    # Points with -1 < y < 1 and -1 < x < 1 interpolate pixel (0, 0).
    y, x = sampling_points(case)
    touches = ((y > -1) & (y < 1) & (x > -1) & (x < 1)).any(axis=(3, 4, 5))
    assert touches.any() and not touches.all()
    assert np.all(np.isnan(got[touches]))
    assert_close(got[~touches], want[~touches], what="outputs away from the NaN")
    # The input gradient does not depend on the input values.
    assert_close(got_grads["inputs"], want_grads["inputs"], what="input gradient")


# ----------------------------------------------------------------------------------
# 8. Bad arguments


def valid_args(data_format="channels_last"):
    """Arguments of a valid call: 5x5x4 image, 3x3 kernel, 6 filters, valid padding."""
    shapes = dict(inputs=(1, 5, 5, 4), offsets=(1, 3, 3, 18), kernel=(3, 3, 4, 6),
                  mask=(1, 3, 3, 9), bias=(6,))
    return {name: to_layout(name, zeros(*shape), data_format)
            for name, shape in shapes.items()}


# (overrides of valid_args, overrides of the keyword arguments, exception, match)
EAGER_ERRORS = [
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5)), {}, ValueError, "inputs",
                 id="inputs_rank"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 18, 1)), {}, ValueError, "offsets",
                 id="offsets_rank"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 9)), {}, ValueError, "mask", id="mask_rank"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 24)), {}, ValueError, "kernel",
                 id="kernel_rank"),
    pytest.param(lambda: dict(bias=zeros(1, 6)), {}, ValueError, "bias", id="bias_rank"),
    pytest.param(lambda: dict(bias=zeros()), {}, ValueError, "bias", id="bias_scalar"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 1, 6)), dict(groups=3), ValueError,
                 "groups", id="channels_not_divisible_by_groups"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 54), mask=zeros(1, 3, 3, 27)),
                 dict(deformable_groups=3), ValueError, "deformable_groups",
                 id="channels_not_divisible_by_deformable_groups"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 3, 6)), {}, ValueError, "kernel",
                 id="kernel_channels"),
    pytest.param(lambda: {}, dict(groups=2), ValueError, "kernel",
                 id="kernel_channels_with_groups"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 2, 5), bias=zeros(5)), dict(groups=2),
                 ValueError, "filters.*groups", id="filters_not_divisible_by_groups"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 16)), {}, ValueError, "offsets",
                 id="offsets_channels"),
    pytest.param(lambda: dict(offsets=zeros(1, 4, 3, 18)), {}, ValueError, "offsets",
                 id="offsets_height"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 2, 18)), {}, ValueError, "offsets",
                 id="offsets_width"),
    pytest.param(lambda: dict(offsets=zeros(2, 3, 3, 18)), {}, ValueError, "offsets",
                 id="offsets_batch"),
    pytest.param(lambda: dict(offsets=zeros(1, 5, 5, 18)), dict(strides=2), ValueError,
                 "offsets", id="offsets_ignore_strides"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 3, 18)), {}, ValueError, "mask",
                 id="mask_channels"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 2, 9)), {}, ValueError, "mask",
                 id="mask_spatial"),
    pytest.param(lambda: dict(mask=zeros(3, 3, 3, 9)), {}, ValueError, "mask",
                 id="mask_batch"),
    pytest.param(lambda: dict(bias=zeros(5)), {}, ValueError, "bias", id="bias_length"),
    *[pytest.param(lambda: {}, dict(strides=value), (ValueError, TypeError), "strides",
                   id=f"strides_{value!r}")
      for value in [0, -1, (1, 0), (2, -1), (1, 2, 3), (1,), True, None, 1.5, "2"]],
    *[pytest.param(lambda: {}, dict(dilation_rate=value), (ValueError, TypeError),
                   "dilation_rate", id=f"dilation_rate_{value!r}")
      for value in [0, (1, 0), (-2, 1), (1, 1, 1), None, 2.5]],
    *[pytest.param(lambda: {}, dict(groups=value), (ValueError, TypeError), "groups",
                   id=f"groups_{value!r}")
      for value in [0, -1, 1.5, None, "2", (1, 1)]],
    *[pytest.param(lambda: {}, dict(deformable_groups=value), (ValueError, TypeError),
                   "deformable_groups", id=f"deformable_groups_{value!r}")
      for value in [0, -2, 1.5, None]],
    *[pytest.param(lambda: {}, dict(padding=value), (ValueError, TypeError), "padding",
                   id=f"padding_{value!r}")
      for value in ["full", "explicit", "", -1, (1, -1), ((1, 0), (0, -2)), (1, 2, 3),
                    ((1,), (2, 3)), 1.5, None, True, ((1, 1), 2)]],
    *[pytest.param(lambda: {}, dict(data_format=value), ValueError, "data_format",
                   id=f"data_format_{value!r}")
      for value in ["NHWC", "channels_middle", None]],
    pytest.param(lambda: dict(inputs=zeros(1, 2, 2, 4), offsets=zeros(1, 1, 1, 18),
                              mask=zeros(1, 1, 1, 9)), {}, ValueError, "kernel",
                 id="kernel_larger_than_input"),
    pytest.param(lambda: dict(offsets=zeros(1, 1, 1, 18), mask=zeros(1, 1, 1, 9)),
                 dict(dilation_rate=3), ValueError, "kernel",
                 id="dilated_kernel_larger_than_input"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 18, dtype=tf.float64)), {}, TypeError,
                 "offsets", id="offsets_dtype"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 18, dtype=tf.int32)), {}, TypeError,
                 "offsets", id="offsets_integer"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 3, 9, dtype=tf.float16)), {}, TypeError,
                 "mask", id="mask_dtype"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 4, 6, dtype=tf.bfloat16)), {}, TypeError,
                 "kernel", id="kernel_dtype"),
    pytest.param(lambda: dict(bias=zeros(6, dtype=tf.float64)), {}, TypeError, "bias",
                 id="bias_dtype"),
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5, 4, dtype=tf.int32)), {}, TypeError,
                 "inputs", id="inputs_int32"),
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5, 4, dtype=tf.int64),
                              offsets=zeros(1, 3, 3, 18, dtype=tf.int64)), {}, TypeError,
                 "inputs", id="inputs_int64"),
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5, 4, dtype=tf.complex64)), {}, TypeError,
                 "inputs", id="inputs_complex"),
]


@pytest.mark.parametrize("overrides, kwargs, error, match", EAGER_ERRORS)
def test_bad_argument_raises(overrides, kwargs, error, match):
    with pytest.raises(error, match=match):
        deform_conv2d(**{**valid_args(), **overrides()}, **kwargs)


def call_traced(args, kwargs, rank_known=True):
    """Calls the op through a tf.function that knows no dimension (or not even the rank)
    of any argument, so that only the kernel can check the shapes."""
    names = [name for name in TENSOR_NAMES if args.get(name) is not None]
    specs = [tf.TensorSpec([None] * args[n].shape.rank if rank_known else None, args[n].dtype)
             for n in names]
    fn = tf.function(lambda *tensors: deform_conv2d(**dict(zip(names, tensors)), **kwargs),
                     input_signature=specs)
    return fn(*(args[n] for n in names))


# (overrides of valid_args, keyword arguments, match); shapes are only known at run time.
RUNTIME_ERRORS = [
    pytest.param(lambda: dict(offsets=zeros(1, 4, 3, 18)), {}, "offsets", id="offsets_height"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 4, 18)), {}, "offsets", id="offsets_width"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 16)), {}, "offsets",
                 id="offsets_channels"),
    pytest.param(lambda: dict(offsets=zeros(2, 3, 3, 18)), {}, "offsets", id="offsets_batch"),
    pytest.param(lambda: dict(mask=zeros(1, 2, 3, 9)), {}, "mask", id="mask_height"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 3, 8)), {}, "mask", id="mask_channels"),
    pytest.param(lambda: dict(mask=zeros(2, 3, 3, 9)), {}, "mask", id="mask_batch"),
    pytest.param(lambda: dict(bias=zeros(7)), {}, "bias", id="bias_length"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 1, 6)), dict(groups=3), "groups",
                 id="channels_not_divisible_by_groups"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 54), mask=zeros(1, 3, 3, 27)),
                 dict(deformable_groups=3), "deformable_groups",
                 id="channels_not_divisible_by_deformable_groups"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 3, 6)), {}, "kernel", id="kernel_channels"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 2, 5), bias=zeros(5)), dict(groups=2),
                 "kernel", id="filters_not_divisible_by_groups"),
    pytest.param(lambda: dict(inputs=zeros(1, 2, 5, 4)), {}, "kernel",
                 id="kernel_larger_than_input"),
    pytest.param(lambda: {}, dict(dilation_rate=(1, 3)), "kernel",
                 id="dilated_kernel_larger_than_input"),
]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("overrides, kwargs, match", RUNTIME_ERRORS)
def test_bad_shape_at_run_time_raises(overrides, kwargs, match, data_format):
    args = {name: to_layout(name, value, data_format)
            for name, value in {**valid_args(), **overrides()}.items()}
    with pytest.raises(InvalidArgumentError, match=match):
        call_traced(args, dict(kwargs, data_format=data_format))


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("name, shape", [
    ("inputs", (1, 5, 5)), ("inputs", (1, 1, 5, 5, 4)), ("offsets", (1, 3, 54)),
    ("mask", (1, 3, 3, 9, 1)), ("kernel", (3, 3, 24)), ("bias", (1, 6)),
])
def test_bad_rank_at_run_time_raises(name, shape, data_format):
    args = valid_args(data_format)
    args[name] = zeros(*shape)
    # The kernel calls its first input "input"; under channels_first a shape check
    # named after the argument runs before the transpose to channels_last.
    pattern = name.removesuffix("s") + "s?[ _]must"
    with pytest.raises(InvalidArgumentError, match=pattern):
        call_traced(args, dict(data_format=data_format), rank_known=False)


def raw_args(op):
    """Positional arguments of a valid call of the raw forward or gradient op."""
    last = zeros(6) if op == "forward" else zeros(1, 3, 3, 6)
    return [zeros(1, 5, 5, 4), zeros(1, 3, 3, 18), zeros(1, 3, 3, 9), zeros(3, 3, 4, 6), last]


def call_raw(op, args, attrs):
    fn = lib.dcn_deform_conv2d if op == "forward" else lib.dcn_deform_conv2d_grad
    return fn(*args, **attrs)


RAW_ATTR_ERRORS = [
    pytest.param(dict(padding="EXPLICIT", explicit_paddings=[1, 1, 1]), "explicit_paddings",
                 id="three_explicit_paddings"),
    pytest.param(dict(padding="EXPLICIT", explicit_paddings=[]), "explicit_paddings",
                 id="no_explicit_paddings"),
    pytest.param(dict(padding="EXPLICIT", explicit_paddings=[1, -1, 0, 0]),
                 "explicit_paddings", id="negative_explicit_padding"),
    pytest.param(dict(padding="VALID", explicit_paddings=[1, 1, 1, 1]), "explicit_paddings",
                 id="explicit_paddings_with_valid"),
    pytest.param(dict(padding="FULL"), "padding", id="unknown_padding"),
    pytest.param(dict(strides=[0, 1]), "strides", id="zero_stride"),
    pytest.param(dict(strides=[1, -3]), "strides", id="negative_stride"),
    pytest.param(dict(strides=[1]), "strides", id="one_stride"),
    pytest.param(dict(strides=[1, 1, 1, 1]), "strides", id="four_strides"),
    pytest.param(dict(dilations=[1, 0]), "dilation", id="zero_dilation"),
    pytest.param(dict(dilations=[2, 2, 2]), "dilation", id="three_dilations"),
    pytest.param(dict(groups=0), "groups", id="zero_groups"),
    pytest.param(dict(deformable_groups=-1), "deformable_groups",
                 id="negative_deformable_groups"),
]


@pytest.mark.parametrize("op", ["forward", "grad"])
@pytest.mark.parametrize("attrs, match", RAW_ATTR_ERRORS)
def test_raw_op_rejects_bad_attributes(attrs, match, op):
    with pytest.raises(InvalidArgumentError, match=match):
        call_raw(op, raw_args(op), attrs)
    # The shape function, which runs when a graph is built, refuses them as well.
    with pytest.raises((ValueError, InvalidArgumentError), match=match):
        tf.function(lambda: call_raw(op, raw_args(op), attrs))()


# (argument index, shape, attributes, match); index 4 is bias or output_grad.
RAW_SHAPE_ERRORS = [
    pytest.param(0, (1, 5, 5), {}, "input", id="input_rank"),
    pytest.param(0, (1, 5, 5, 0), {}, "input", id="input_no_channels"),
    pytest.param(0, (1, 2, 5, 4), {}, "kernel", id="kernel_larger_than_input"),
    pytest.param(1, (1, 3, 4, 18), {}, "offsets", id="offsets_width"),
    pytest.param(1, (1, 3, 3, 18, 1), {}, "offsets", id="offsets_rank"),
    pytest.param(1, (2, 3, 3, 18), {}, "offsets", id="offsets_batch"),
    pytest.param(2, (1, 3, 3, 8), {}, "mask", id="mask_channels"),
    pytest.param(2, (1, 3, 3), {}, "mask", id="mask_rank"),
    pytest.param(3, (3, 3, 24), {}, "kernel", id="kernel_rank"),
    pytest.param(3, (0, 3, 4, 6), {}, "kernel", id="kernel_empty"),
    pytest.param(3, (3, 3, 3, 6), {}, "kernel", id="kernel_channels"),
    pytest.param(3, (3, 3, 4, 6), dict(groups=2), "kernel", id="kernel_channels_groups"),
    pytest.param(3, (3, 3, 2, 5), dict(groups=2), "kernel", id="filters_not_divisible"),
    pytest.param(3, (3, 3, 1, 6), dict(groups=3), "groups", id="channels_not_divisible"),
    pytest.param(2, (1, 3, 3, 27), dict(deformable_groups=3), "deformable_groups",
                 id="channels_not_divisible_by_deformable_groups"),
]


@pytest.mark.parametrize("op", ["forward", "grad"])
@pytest.mark.parametrize("index, shape, attrs, match", RAW_SHAPE_ERRORS)
def test_raw_op_rejects_bad_shapes(index, shape, attrs, match, op):
    args = raw_args(op)
    args[index] = zeros(*shape)
    with pytest.raises(InvalidArgumentError, match=match):
        call_raw(op, args, attrs)


@pytest.mark.parametrize("op, shape, match", [
    ("forward", (5,), "bias"),
    ("forward", (1, 6), "bias"),
    ("grad", (1, 3, 3, 5), "output_grad"),
    ("grad", (2, 3, 3, 6), "output_grad"),
    ("grad", (1, 3, 2, 6), "output_grad"),
    ("grad", (1, 3, 3), "output_grad"),
])
def test_raw_op_rejects_bad_bias_or_output_grad(op, shape, match):
    args = raw_args(op)
    args[4] = zeros(*shape)
    with pytest.raises(InvalidArgumentError, match=match):
        call_raw(op, args, {})


# Calls whose sizes overflow 64-bit arithmetic. They run in a child process, so that a
# crash fails its test instead of ending the session.
OVERFLOW_CASES = {
    "raw_huge_strides": "lib.dcn_deform_conv2d(x, off, m, k, b, strides=[2**62, 2**62])",
    "raw_huge_explicit_paddings": (
        "lib.dcn_deform_conv2d_grad(x, off, m, k, tf.zeros([1, 3, 3, 6]), "
        "padding='EXPLICIT', explicit_paddings=[2**40] * 4)"),
    "traced_huge_dilation": "traced(dilation_rate=(2**62, 1))",
}

_CHILD = """
import sys
import tensorflow as tf
from keras_dcn._library import ops as lib
from keras_dcn.ops import deform_conv2d

x, off, m = tf.zeros([1, 5, 5, 4]), tf.zeros([1, 3, 3, 18]), tf.zeros([1, 3, 3, 9])
k, b = tf.zeros([3, 3, 4, 6]), tf.zeros([6])

def traced(**kwargs):
    spec = tf.TensorSpec([None] * 4)
    fn = tf.function(lambda *t: deform_conv2d(t[0], t[1], t[3], t[2], b, **kwargs),
                     input_signature=[spec] * 4)
    return fn(x, off, m, k)

cases = %r
for name in sys.argv[1:]:
    print("START", name, flush=True)
    try:
        eval(cases[name])
        outcome = "no error"
    except Exception as error:
        outcome = type(error).__name__ + ": " + " ".join(str(error).split())
    print("RESULT", name, outcome, flush=True)
""" % (OVERFLOW_CASES,)


@pytest.fixture(scope="module")
def overflow_outcomes():
    """{case: the error it raised, or how its process ended}. One child runs the cases
    in turn; after a crash, a new one goes on with the next case."""
    outcomes, pending = {}, list(OVERFLOW_CASES)
    while pending:
        child = subprocess.run([sys.executable, "-c", _CHILD, *pending], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=300)
        current = None
        for line in child.stdout.splitlines():
            word, _, rest = line.partition(" ")
            name, _, outcome = rest.partition(" ")
            if word == "START":
                current = name
            elif word == "RESULT":
                outcomes[name], current = outcome, None
        if child.returncode != 0:
            tail = " ".join(child.stderr.split()[-30:])
            outcomes[current or pending[0]] = f"process died (exit {child.returncode}): ...{tail}"
        pending = [name for name in pending if name not in outcomes]
    return outcomes


@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
def test_overflowing_sizes_raise_instead_of_crashing(case, overflow_outcomes):
    outcome = overflow_outcomes[case]
    assert outcome.startswith(("InvalidArgumentError", "ValueError")), outcome


# ----------------------------------------------------------------------------------
# 9. Random configurations


@st.composite
def configurations(draw):
    kernel_size = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = draw(st.sampled_from([1, 2, (1, 2), (3, 1)]))
    dilation_rate = draw(st.sampled_from([1, 2, (2, 1)]))
    groups = draw(st.sampled_from([1, 2, 3]))
    deformable_groups = draw(st.sampled_from([1, 2]))
    channels = math.lcm(groups, deformable_groups) * draw(st.integers(1, 2))
    filters = groups * draw(st.integers(1, 2))
    small = st.integers(0, 2)
    padding = draw(st.one_of(
        st.sampled_from(["valid", "same"]), small, st.tuples(small, small),
        st.tuples(st.tuples(small, small), st.tuples(small, small))))
    # The smallest image the dilated kernel fits in (any image with "same"), and a bit more.
    size = []
    for axis in range(2):
        least = 1
        if padding != "same":
            pads = resolve_padding(padding, None, kernel_size, None, None)
            effective = (kernel_size[axis] - 1) * pair(dilation_rate)[axis] + 1
            least = max(1, effective - pads[2 * axis] - pads[2 * axis + 1])
        size.append(least + draw(st.integers(0, 4)))
    return dict(
        config=dict(batch=draw(st.integers(1, 2)), size=tuple(size), channels=channels,
                    filters=filters, kernel_size=kernel_size, strides=strides,
                    padding=padding, dilation_rate=dilation_rate, groups=groups,
                    deformable_groups=deformable_groups, mask=draw(st.booleans()),
                    bias=draw(st.booleans()),
                    offset_scale=draw(st.sampled_from([0.0, 0.6, 2.5]))),
        data_format=draw(st.sampled_from(DATA_FORMATS)),
        seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=35, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_random_configurations_match_reference(drawn):
    rng = np.random.default_rng(drawn["seed"])
    case = make_case(rng, **drawn["config"])
    assert_matches_reference(case, tf.float64, drawn["data_format"], rng)
