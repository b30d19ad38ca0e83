"""Helpers shared by the layer tests: running Python in a fresh process, the layers'
outputs computed without the layers (numpy branches, plain-TF ops of
`tests.reference`), and checking gradients against central differences."""

import os
import subprocess
import sys
import textwrap

import numpy as np

from tests import reference

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python_env(**extra):
    """The environment of a child Python: ours, the checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_python(source, *args, env=None, timeout=240):
    """Runs `source` (code) in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args], cwd=REPO,
        env=env or python_env(), capture_output=True, text=True, timeout=timeout)


def check(result):
    """Asserts a child exited with 0, showing its output otherwise."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def numpy_conv(inputs, kernel, bias, strides, pads, dilations=(1, 1)):
    """Cross-correlation in numpy: inputs [N, H, W, C], kernel [kh, kw, C, O], pads
    (top, bottom, left, right)."""
    top, bottom, left, right = pads
    padded = np.pad(inputs, [(0, 0), (top, bottom), (left, right), (0, 0)])
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = strides, dilations
    ho = (padded.shape[1] - (kh - 1) * dh - 1) // sh + 1
    wo = (padded.shape[2] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((inputs.shape[0], ho, wo, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            y, x = i * dh, j * dw
            window = padded[:, y:y + sh * (ho - 1) + 1:sh, x:x + sw * (wo - 1) + 1:sw]
            out += window @ kernel[i, j]
    return out + bias


def sigmoid(x):
    """The logistic function in numpy."""
    return 1 / (1 + np.exp(-x))


def conv_offsets_and_mask(inputs, weights, strides, pads, modulated=True,
                          deformable_groups=1, dilations=(1, 1)):
    """`DeformConv2D`'s offset / mask branch in numpy: `(offsets, mask)` of the
    convolution of inputs [N, H, W, C] with `weights['offset_kernel']` and
    `weights['offset_bias']` (mask None when not `modulated`)."""
    branch = numpy_conv(inputs, weights["offset_kernel"], weights["offset_bias"], strides,
                        pads, dilations)
    kh, kw = weights["offset_kernel"].shape[:2]
    split = 2 * deformable_groups * kh * kw
    return branch[..., :split], sigmoid(branch[..., split:]) if modulated else None


def independent_deform_conv(inputs, weights, strides, pads, modulated=True, groups=1,
                            deformable_groups=1, dilations=(1, 1)):
    """`DeformConv2D`'s output before its activation, channels_last, computed without
    the layer: the branch (`conv_offsets_and_mask`), then Eq. 1 by the plain-TF
    reference with `weights['kernel']` and `weights['bias']`."""
    offsets, mask = conv_offsets_and_mask(inputs, weights, strides, pads, modulated,
                                          deformable_groups, dilations)
    return reference.deform_conv2d(
        inputs, offsets, weights["kernel"], mask=mask, bias=weights["bias"],
        strides=strides, pads=pads, dilations=dilations, groups=groups,
        deformable_groups=deformable_groups).numpy()


def roi_offsets_and_mask(pooled, weights, output_size, modulated=True):
    """`DeformRoIPool`'s sibling branch in numpy: flattened RoIAlign features
    [R, oh, ow, C] -> fc -> ReLU -> fc -> ReLU -> fc -> (dy, dx) per bin and, when
    modulated, a sigmoid mask."""
    oh, ow = output_size
    hidden = pooled.reshape(pooled.shape[0], -1)
    for index in (1, 2):
        hidden = np.maximum(
            hidden @ weights[f"hidden{index}_kernel"] + weights[f"hidden{index}_bias"], 0)
    branch = hidden @ weights["offset_kernel"] + weights["offset_bias"]
    offsets = branch[:, :2 * oh * ow].reshape(-1, oh, ow, 2)
    mask = sigmoid(branch[:, 2 * oh * ow:].reshape(-1, oh, ow, 1)) if modulated else None
    return offsets, mask


def independent_deform_roi_pool(features, rois, weights, modulated=True, **pool_args):
    """`DeformRoIPool`'s output, channels_last, computed without the layer: RoIAlign
    and Eq. 2 by the plain-TF reference, the branch in numpy (`roi_offsets_and_mask`).
    `pool_args` are the op's, `output_size` a pair."""
    pooled = reference.deform_roi_pool(features, rois, **pool_args).numpy()
    offsets, mask = roi_offsets_and_mask(pooled, weights, pool_args["output_size"],
                                         modulated)
    return reference.deform_roi_pool(features, rois, offsets=offsets, mask=mask,
                                     **pool_args).numpy()


def central_differences(loss, values, indices, delta=1e-6):
    """d loss / d values at `indices` (tuples into the float64 array `values`), by
    central differences of `loss(values) -> float`."""
    slopes = []
    for index in indices:
        step = np.zeros_like(values)
        step[index] = delta
        slopes.append((loss(values + step) - loss(values - step)) / (2 * delta))
    return np.array(slopes)


def sample_indices(rng, shape, count):
    """`count` distinct random index tuples into an array of `shape`."""
    flat = rng.choice(int(np.prod(shape)), size=min(count, int(np.prod(shape))),
                      replace=False)
    return [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat]


def assert_layer_gradients(grads, inputs, weights, independent, cotangent, rng, scales,
                           count=6):
    """Checks a layer's gradients against central differences of an independent
    computation.

    grads: the layer's gradients of `sum(outputs * cotangent)` with respect to its
    input, then to each of `weights` (`{name: float64 array}` in the layer's order);
    `independent(inputs, weights)` computes the outputs. Each gradient is checked at
    `count` random entries (the input's also at its 3 largest), scaled by
    `scales.get(name, 1.0)`; the differences there must not all be ~0.
    """
    named = [("inputs", inputs)] + list(weights.items())
    for (name, values), grad in zip(named, grads):
        def loss(changed, name=name):
            if name == "inputs":
                return np.sum(independent(changed, weights) * cotangent)
            return np.sum(independent(inputs, {**weights, name: changed}) * cotangent)
        grad = np.asarray(grad)
        indices = sample_indices(rng, values.shape, count)
        if name == "inputs":
            top = np.argsort(-np.abs(grad), axis=None)[:3]
            indices += [tuple(int(i) for i in np.unravel_index(t, values.shape)) for t in top]
        numeric = central_differences(loss, values, indices)
        got = np.array([grad[index] for index in indices])
        np.testing.assert_allclose(got, scales.get(name, 1.0) * numeric, rtol=1e-5,
                                   atol=1e-8, err_msg=name)
        assert np.abs(numeric).max() > 1e-4, f"{name}: the checked entries have no gradient"
