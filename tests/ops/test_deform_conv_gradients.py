"""Gradients of keras_dcn.ops.deform_conv2d beyond the comparison with the reference:
numerical Jacobians of every tensor argument, and the border rule at zero offsets
(taps at -1 or past the image get no offset or mask gradient, interior integer
positions the right-hand derivative)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import deform_conv2d
from tests.ops.conv_cases import (
    TENSOR_NAMES, make_case, op_with_grads, sampling_points, to_layout)
from tests.ops.helpers import DATA_FORMATS, IMPLEMENTATIONS


def fractional_offsets(rng, shape):
    """Offsets whose fractional parts stay in [0.1, 0.9]: with integer base positions no
    sampling point is near an integer coordinate, where interpolation has a kink."""
    return rng.integers(-2, 3, size=shape) + rng.uniform(0.1, 0.9, size=shape)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("wrt", TENSOR_NAMES)
def test_numerical_jacobian(wrt, data_format, implementation, rng):
    case = make_case(rng, batch=1, size=(4, 5), channels=4, filters=4, kernel_size=(2, 3),
                     strides=(1, 2), padding=((1, 0), (1, 1)), dilation_rate=(2, 1),
                     groups=2, deformable_groups=2)
    case.offsets = fractional_offsets(rng, case.offsets.shape)
    tensors = {name: to_layout(name, tf.constant(value), data_format)
               for name, value in case.tensors().items()}

    def f(value):
        return deform_conv2d(**{**tensors, wrt: value}, data_format=data_format,
                             **case.op_kwargs(), implementation=implementation)

    theoretical, numerical = tf.test.compute_gradient(f, [tensors[wrt]], delta=1e-3)
    scale = np.max(np.abs(numerical[0]))
    assert scale > 0
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_zero_offsets_border_rule_and_right_hand_derivative(implementation, rng):
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

    _, grads = op_with_grads(case, upstream, implementation=implementation)
    offsets_grad = grads["offsets"].reshape(-1, 2)  # one row per tap: (d/dy, d/dx)
    mask_grad = grads["mask"].reshape(-1)
    np.testing.assert_array_equal(offsets_grad[outside], 0.0)
    np.testing.assert_array_equal(mask_grad[outside], 0.0)

    # Border taps read 0: their mask value does not matter.
    base = deform_conv2d(case.inputs, case.offsets, case.kernel, case.mask,
                         **case.op_kwargs(), implementation=implementation)
    bigger = case.mask.reshape(-1).copy()
    bigger[outside] = 1e6
    changed = deform_conv2d(case.inputs, case.offsets, case.kernel,
                            bigger.reshape(case.mask.shape), **case.op_kwargs(), implementation=implementation)
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
                                  **case.op_kwargs(), implementation=implementation))

    at = loss(deform_conv2d(case.inputs, case.offsets, case.kernel, case.mask,
                            **case.op_kwargs(), implementation=implementation))
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
