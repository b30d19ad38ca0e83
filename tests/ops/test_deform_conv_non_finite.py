"""keras_dcn.ops.deform_conv2d on non-finite values: NaN, infinite and huge offsets read
zero, and a NaN pixel reaches only the outputs that sample it."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.ops.conv_cases import (
    make_case, op_with_grads, reference_with_grads, rounded, sampling_points)
from tests.ops.helpers import DTYPES, IMPLEMENTATIONS, assert_close


NON_FINITE = [np.nan, np.inf, -np.inf, 1e30, -1e30]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_and_huge_offsets_read_zero(dtype, implementation, rng):
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
                                   tensors={**tensors, "offsets": tf.cast(bad, dtype)},
                                   implementation=implementation)
    want, want_grads = reference_with_grads(case, upstream, dtype,
                                            tensors={**tensors, "offsets": tf.cast(far, dtype)})
    assert np.all(np.isfinite(got))
    assert_close(got, want, dtype, "output")
    for name, grad in got_grads.items():
        assert np.all(np.isfinite(grad)), name
        assert_close(grad, want_grads[name], dtype, f"gradient of {name}")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("offset_scale", [0.0, 1.5])
def test_nan_pixel_only_reaches_outputs_that_sample_it(offset_scale, implementation, rng):
    case = make_case(rng, size=(6, 7), padding=1, offset_scale=offset_scale)
    poisoned = case.inputs.copy()
    poisoned[:, 0, 0, :] = np.nan
    upstream = rng.normal(size=case.output_shape)
    got, got_grads = op_with_grads(
        case, upstream, tensors={**rounded(case.tensors(), tf.float64),
                                 "inputs": tf.constant(poisoned)},
        implementation=implementation)
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
