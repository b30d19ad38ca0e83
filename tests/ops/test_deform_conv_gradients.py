"""Gradients of keras_dcn.ops.deform_conv2d beyond the comparison with the reference:
numerical Jacobians of every tensor argument, the border rule at zero offsets
(taps at -1 or past the image get no offset or mask gradient, interior integer
positions the right-hand derivative), and the gradient op's two halves (input,
offsets and mask; kernel and bias)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn._library import ops as lib
from keras_dcn.ops import deform_conv2d
from tests.ops.conv_cases import (
    TENSOR_NAMES, make_case, op_with_grads, reference_with_grads, rounded,
    sampling_points, to_layout)
from tests.ops.helpers import DATA_FORMATS, IMPLEMENTATIONS, assert_close


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


# ----------------------------------------------------------------------------------
# The gradient op's two halves


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16, tf.bfloat16])
def test_gradient_halves_equal_the_whole_gradient(dtype, rng):
    """input_gradients / kernel_gradients: each half alone gives exactly what the
    whole op gives for its outputs, the other half's outputs empty, in the shape
    function too."""
    case = make_case(rng, batch=3, size=(7, 6), channels=4, filters=6, strides=(1, 2),
                     padding="same", groups=2, deformable_groups=2)
    tensors = rounded(case.tensors(), dtype)
    upstream = tf.cast(rng.normal(size=case.output_shape), dtype)
    args = (tensors["inputs"], tensors["offsets"], tensors["mask"], tensors["kernel"],
            upstream)
    attrs = dict(strides=case.stride_pair, padding="SAME", groups=case.groups,
                 deformable_groups=case.deformable_groups)
    whole = lib.dcn_deform_conv2d_grad(*args, **attrs)
    halves = {
        "input": (lib.dcn_deform_conv2d_grad(*args, kernel_gradients=False, **attrs),
                  range(3)),
        "kernel": (lib.dcn_deform_conv2d_grad(*args, input_gradients=False, **attrs),
                   range(3, 5)),
    }
    for half, (grads, computed) in halves.items():
        for i, grad in enumerate(grads):
            if i in computed:
                np.testing.assert_array_equal(
                    tf.cast(grad, tf.float64).numpy(),
                    tf.cast(whole[i], tf.float64).numpy(), err_msg=f"{half} half, output {i}")
            else:
                assert grad.shape == (0,), (half, i)
    neither = lib.dcn_deform_conv2d_grad(*args, input_gradients=False,
                                         kernel_gradients=False, **attrs)
    assert [g.shape for g in neither] == [(0,)] * 5
    symbolic = tf.function(lambda *a: lib.dcn_deform_conv2d_grad(
        *a, kernel_gradients=False, **attrs)).get_concrete_function(
            *(tf.TensorSpec(a.shape, dtype) for a in args))
    assert [o.shape.as_list() for o in symbolic.outputs] == [
        list(case.inputs.shape), list(case.offsets.shape), list(case.mask.shape), [0], [0]]


@pytest.mark.parametrize("watched", ["all", "data", "weights"])
def test_tape_runs_the_halves_it_needs(watched, rng):
    """Through a GradientTape in a tf.function the gradient runs as two ops, one for
    each half, or only the half whose inputs are watched (a frozen kernel and bias, or
    constant inputs, offsets and mask), and matches the reference."""
    case = make_case(rng, batch=2, size=(5, 6), channels=4, filters=3, padding="same")
    tensors = {name: tf.constant(value) for name, value in case.tensors().items()}
    upstream = rng.normal(size=case.output_shape)
    names = {"all": list(tensors), "data": ["inputs", "offsets", "mask"],
             "weights": ["kernel", "bias"]}[watched]

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            tape.watch([tensors[name] for name in names])
            out = deform_conv2d(**tensors, **case.op_kwargs())
            loss = tf.reduce_sum(out * upstream)
        return tape.gradient(loss, [tensors[name] for name in names])

    grads = dict(zip(names, gradients()))
    _, expected = reference_with_grads(case, upstream)
    for name in names:
        assert_close(grads[name], expected[name], tf.float64, f"gradient of {name}")
    graph = gradients.get_concrete_function().graph
    halves = sorted((op.get_attr("input_gradients"), op.get_attr("kernel_gradients"))
                    for op in graph.get_operations() if op.type == "DcnDeformConv2DGrad")
    assert halves == {"all": [(False, True), (True, False)], "data": [(True, False)],
                      "weights": [(False, True)]}[watched]
