"""The CUDA kernels' code (tf_ops/cc/kernels/portable/*.cuh), compiled for the host, against
the plain-TensorFlow references of tests/reference.py.

`tests/gpu/build.sh --host` compiles harness.cu with a host C++ compiler: every
kernel body (a function of its work-item index) then runs in a host loop, and the
tiled matrix product runs block by block, phase by phase, as the GPU would run it.
This checks the device code's indexing, chunking, split-K and scratch layout on
machines without a GPU; run_harness.py checks the CUDA build itself on a GPU.
"""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests import reference
from tests.gpu import harness_lib

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="no host C++ compiler (CXX, default g++) to build the host harness")

TOLERANCES = {"float32": dict(rtol=2e-4, atol=2e-4), "float64": dict(rtol=1e-9, atol=1e-9)}


@pytest.fixture(scope="module")
def harness():
    return harness_lib.Harness(harness_lib.build(host=True))


def _address(array):
    return array.ctypes.data if array is not None else None


# --------------------------------------------------------------------------- conv

CONV_CASES = {
    "3x3_pad1": dict(batch=2, height=7, width=6, channels=4, filters=5, kernel=(3, 3),
                     pads=(1, 1, 1, 1)),
    "strided_dilated_groups": dict(batch=2, height=9, width=8, channels=6, filters=4,
                                   kernel=(3, 2), strides=(2, 1), pads=(2, 0, 1, 1),
                                   dilations=(2, 2), groups=2, deformable_groups=3),
    "groups4_dg2": dict(batch=1, height=6, width=7, channels=8, filters=8, kernel=(2, 3),
                        pads=(0, 1, 1, 0), groups=4, deformable_groups=2),
    "1x1_wide": dict(batch=3, height=5, width=4, channels=3, filters=70, kernel=(1, 1)),
    # Several tiles of every product along M and N (tiles of 128 x 64).
    "multi_tile": dict(batch=2, height=12, width=13, channels=20, filters=70,
                       kernel=(3, 3), pads=(1, 1, 1, 1), deformable_groups=2),
}

# The gradients each half of the backward pass computes.
CONV_HALVES = {"input": ("input", "offsets", "mask"), "kernel": ("kernel", "bias")}

# (rows per chunk, split-K rows, 64-bit indices); None: the defaults (one chunk).
CONV_TUNINGS = {"default": None, "chunked": (37, 16, 1)}


def _conv_data(geometry, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = geometry.shapes()
    data = {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()
            if name != "output"}
    data["offsets"] *= 1.5
    data["mask"] = rng.uniform(-0.5, 1.5, shapes["mask"]).astype(dtype)
    # Exact integers, and a point exactly on the border of the readable range
    # (y = -1 for the first tap of the first pixel).
    off = data["offsets"].reshape(-1, 2)
    off[::7] = 0.0
    if off.shape[0]:
        off[0] = (geometry.pad_top - 1.0, 0.25)
    data["output_grad"] = rng.standard_normal(shapes["output"]).astype(dtype)
    return data


def _conv_reference(geometry, data):
    pads = (geometry.pad_top,
            (geometry.out_height - 1) * geometry.stride_h
            + (geometry.kernel_h - 1) * geometry.dilation_h + 1
            - geometry.in_height - geometry.pad_top,
            geometry.pad_left,
            (geometry.out_width - 1) * geometry.stride_w
            + (geometry.kernel_w - 1) * geometry.dilation_w + 1
            - geometry.in_width - geometry.pad_left)
    tensors = {k: tf.constant(data[k].astype(np.float64))
               for k in ("input", "offsets", "mask", "kernel", "bias")}
    with tf.GradientTape() as tape:
        tape.watch(list(tensors.values()))
        out = reference.deform_conv2d(
            tensors["input"], tensors["offsets"], tensors["kernel"], tensors["mask"],
            tensors["bias"], strides=(geometry.stride_h, geometry.stride_w), pads=pads,
            dilations=(geometry.dilation_h, geometry.dilation_w), groups=geometry.groups,
            deformable_groups=geometry.deformable_groups)
        loss = tf.reduce_sum(out * data["output_grad"].astype(np.float64))
    grads = tape.gradient(loss, tensors)
    return out.numpy(), {k: v.numpy() for k, v in grads.items()}


def _run_conv(harness, geometry, data, dtype, tuning, halves=tuple(CONV_HALVES)):
    """The forward output and the gradients of the `halves` (of CONV_HALVES) of the
    backward pass asked for; the others are passed as null pointers."""
    name = np.dtype(dtype).name
    shapes = geometry.shapes()
    tune = None
    if tuning is not None:
        rows, split, wide = tuning
        tune = (rows * geometry.taps * geometry.in_channels, split, wide)
    output = np.full(shapes["output"], np.nan, dtype)
    scratch = np.zeros(max(1, harness.conv_scratch_bytes(name, False, geometry, tune)), np.uint8)
    harness.conv_forward(name, geometry, *(_address(data[k]) for k in
                                           ("input", "offsets", "mask", "kernel", "bias")),
                         _address(output), _address(scratch), tuning=tune)
    grads = {k: np.full(shapes[k], np.nan, dtype) if half in halves else None
             for half, names in CONV_HALVES.items() for k in names}
    scratch = np.zeros(max(1, harness.conv_scratch_bytes(name, True, geometry, tune)), np.uint8)
    harness.conv_backward(name, geometry, *(_address(data[k]) for k in
                                            ("input", "offsets", "mask", "kernel",
                                             "output_grad")),
                          *(_address(grads[k]) for k in
                            ("input", "offsets", "mask", "kernel", "bias")),
                          _address(scratch), tuning=tune)
    return output, grads


@pytest.mark.parametrize("tuning", CONV_TUNINGS, ids=list(CONV_TUNINGS))
@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_conv_matches_reference(harness, case, tuning, dtype):
    geometry = harness_lib.ConvGeometry.make(**CONV_CASES[case])
    data = _conv_data(geometry, dtype)
    expected, expected_grads = _conv_reference(geometry, data)
    output, grads = _run_conv(harness, geometry, data, dtype, CONV_TUNINGS[tuning])
    tol = TOLERANCES[np.dtype(dtype).name]
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(output, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)
    for name, want in expected_grads.items():
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(grads[name], want, rtol=tol["rtol"],
                                   atol=tol["atol"] * scale, err_msg=f"{name} gradient")


@pytest.mark.parametrize("half", ["input", "kernel"])
def test_conv_backward_halves_alone(harness, half):
    """Either half of the backward pass alone (the other half's outputs null) gives
    the same gradients as the whole pass, chunked too."""
    geometry = harness_lib.ConvGeometry.make(**CONV_CASES["strided_dilated_groups"])
    data = _conv_data(geometry, np.float64)
    tuning = CONV_TUNINGS["chunked"]
    _, whole = _run_conv(harness, geometry, data, np.float64, tuning)
    _, alone = _run_conv(harness, geometry, data, np.float64, tuning, halves=(half,))
    names = CONV_HALVES[half]
    assert {name for name, grad in alone.items() if grad is not None} == set(names)
    for name in names:
        np.testing.assert_array_equal(alone[name], whole[name], err_msg=f"{name} gradient")


def test_conv_border_points_get_no_coordinate_gradient(harness):
    # Zero offsets with padding put the border taps exactly at y = -1 / x = -1.
    geometry = harness_lib.ConvGeometry.make(1, 4, 5, 2, 3, pads=(1, 1, 1, 1))
    data = _conv_data(geometry, np.float64)
    data["offsets"][:] = 0.0
    _, grads = _run_conv(harness, geometry, data, np.float64, None)
    offsets_grad = grads["offsets"].reshape(1, 4, 5, 3, 3, 2)
    mask_grad = grads["mask"].reshape(1, 4, 5, 3, 3)
    # Top row of outputs, top row of taps: y = -1.
    assert np.all(offsets_grad[:, 0, :, 0, :, :] == 0)
    assert np.all(mask_grad[:, 0, :, 0, :] == 0)
    # Left column of outputs, left column of taps: x = -1.
    assert np.all(offsets_grad[:, :, 0, :, 0, :] == 0)
    assert np.all(mask_grad[:, :, 0, :, 0] == 0)
    # Inner taps do get gradients.
    assert np.any(mask_grad[:, 1:-1, 1:-1] != 0)


def test_conv_empty_image_still_has_bias_gradient(harness):
    # An input of height 0 with explicit padding: every point reads 0.
    geometry = harness_lib.ConvGeometry.make(2, 0, 3, 2, 4, kernel=(1, 1), pads=(1, 1, 0, 0))
    data = _conv_data(geometry, np.float64)
    output, grads = _run_conv(harness, geometry, data, np.float64, None)
    np.testing.assert_allclose(output, np.broadcast_to(data["bias"], output.shape))
    np.testing.assert_allclose(grads["bias"], data["output_grad"].sum(axis=(0, 1, 2)))
    for name in ("offsets", "mask", "kernel"):
        assert np.all(grads[name] == 0), name


# ----------------------------------------------------------------------- RoI pool

ROI_CASES = {
    "aligned_ratio2": dict(aligned=True, sampling_ratio=2, spatial_scale=0.5, out=(3, 4)),
    "unaligned_adaptive": dict(aligned=False, sampling_ratio=0, spatial_scale=0.5,
                               out=(2, 2)),
    "aligned_adaptive_wide": dict(aligned=True, sampling_ratio=0, spatial_scale=1.0,
                                  out=(3, 3), wide_index=True),
}


def _roi_data(dtype, seed=0):
    """Features, and RoIs in the type the kernels read them in for `dtype` (float64
    for float64, so their decimals are not rounded to float32)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((2, 9, 11, 5)).astype(dtype)
    rois = np.array([
        [0, 1.3, 2.1, 14.7, 12.2],
        [1, -6.0, -4.0, 5.0, 7.0],     # partly outside
        [1, 10.0, 3.0, 30.0, 25.0],    # beyond the bottom-right corner
        [0, 4.5, 4.5, 4.5, 4.5],       # a single point
        [1, 0.0, 0.0, 21.0, 17.0],     # the whole map
    ]).astype(dtype)
    return features, rois


@pytest.mark.parametrize("case", ROI_CASES, ids=list(ROI_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_roi_pool_matches_reference(harness, case, dtype):
    params = ROI_CASES[case]
    features, rois = _roi_data(dtype)
    oh, ow = params["out"]
    rng = np.random.default_rng(1)
    num_rois = rois.shape[0]
    offsets = (rng.standard_normal((num_rois, oh, ow, 2)) * 0.4).astype(dtype)
    mask = rng.uniform(0, 1, (num_rois, oh, ow, 1)).astype(dtype)
    mask[0, 0, 0, 0] = 0.0
    output_grad = rng.standard_normal((num_rois, oh, ow, features.shape[3])).astype(dtype)
    geometry = harness_lib.RoiGeometry(
        batch=2, height=9, width=11, channels=5, num_rois=num_rois, out_height=oh,
        out_width=ow, sampling_ratio=params["sampling_ratio"], aligned=params["aligned"],
        spatial_scale=params["spatial_scale"], gamma=0.1)
    name = np.dtype(dtype).name
    wide = params.get("wide_index", False)

    output = np.full(output_grad.shape, np.nan, dtype)
    harness.roi_pool_forward(name, geometry, _address(features), _address(rois),
                             _address(offsets), _address(mask), _address(output),
                             wide_index=wide)
    grads = [np.full(a.shape, np.nan, dtype) for a in (features, offsets, mask)]
    scratch = np.zeros(max(1, harness.roi_pool_scratch_bytes(name, geometry)), np.uint8)
    harness.roi_pool_backward(name, geometry, _address(features), _address(rois),
                              _address(offsets), _address(mask), _address(output_grad),
                              *(_address(g) for g in grads), _address(scratch),
                              wide_index=wide)

    tensors = [tf.constant(a.astype(np.float64)) for a in (features, offsets, mask)]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        expected = reference.deform_roi_pool(
            tensors[0], rois, tensors[1], tensors[2], output_size=(oh, ow),
            spatial_scale=geometry.spatial_scale, sampling_ratio=geometry.sampling_ratio,
            gamma=geometry.gamma, aligned=geometry.aligned)
        loss = tf.reduce_sum(expected * output_grad.astype(np.float64))
    expected_grads = tape.gradient(loss, tensors)

    tol = TOLERANCES[name]
    np.testing.assert_allclose(output, expected.numpy(), rtol=tol["rtol"], atol=tol["atol"])
    for label, got, want in zip(("features", "offsets", "mask"), grads, expected_grads):
        want = want.numpy()
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                   err_msg=f"{label} gradient")


@pytest.mark.parametrize("batch, filters", [(0, 3), (2, 0)], ids=["no_images", "no_filters"])
def test_conv_empty_tensors(harness, batch, filters):
    geometry = harness_lib.ConvGeometry.make(batch, 4, 5, 2, filters, pads=(1, 1, 1, 1))
    data = _conv_data(geometry, np.float64)
    output, grads = _run_conv(harness, geometry, data, np.float64, None)
    assert output.size == 0
    for name, grad in grads.items():
        assert np.all(grad == 0), name


@pytest.mark.parametrize("num_rois, height", [(0, 9), (2, 0)], ids=["no_rois", "empty_map"])
def test_roi_pool_empty_tensors(harness, num_rois, height):
    rng = np.random.default_rng(2)
    features = rng.standard_normal((2, height, 11, 3))
    rois = np.array([[0, 1.0, 1.0, 6.0, 5.0], [1, 2.0, 0.0, 9.0, 3.0]])[:num_rois]
    geometry = harness_lib.RoiGeometry(batch=2, height=height, width=11, channels=3,
                                       num_rois=num_rois, out_height=2, out_width=2)
    offsets = rng.standard_normal((num_rois, 2, 2, 2))
    mask = np.ones((num_rois, 2, 2, 1))
    output_grad = rng.standard_normal((num_rois, 2, 2, 3))
    output = np.full(output_grad.shape, np.nan)
    harness.roi_pool_forward("float64", geometry, _address(features), _address(rois),
                             _address(offsets), _address(mask), _address(output))
    grads = [np.full(a.shape, np.nan) for a in (features, offsets, mask)]
    scratch = np.zeros(max(1, harness.roi_pool_scratch_bytes("float64", geometry)), np.uint8)
    harness.roi_pool_backward("float64", geometry, _address(features), _address(rois),
                              _address(offsets), _address(mask), _address(output_grad),
                              *(_address(g) for g in grads), _address(scratch))
    assert np.all(output == 0)
    for grad in grads:
        assert np.all(grad == 0)
