"""keras_dcn.ops._deform_conv_composite and the bands `deform_conv2d` splits it into:
the composite alone against the plain-TensorFlow reference, and banded against
unbanded (values and every gradient). The composite through `deform_conv2d`, on the
op test grid: test_deform_conv_reference.py and the other op tests."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import _deform_conv_composite
from keras_dcn.ops import deform_conv as deform_conv_module
from keras_dcn.ops._array_namespace import TENSORFLOW
from tests import reference
from tests.ops.conv_cases import make_case, op_with_grads
from tests.ops.helpers import assert_close


def test_matches_the_reference_with_groups_strides_and_padding(rng):
    case = make_case(rng, size=(9, 8), channels=6, filters=4, strides=(2, 1),
                     dilation_rate=(1, 2), padding=((2, 1), (1, 2)), groups=2,
                     deformable_groups=3, offset_scale=2.0)
    tensors = {name: tf.constant(value) for name, value in case.tensors().items()}
    got = _deform_conv_composite.deform_conv2d(
        TENSORFLOW, tensors["inputs"], tensors["offsets"], tensors["mask"],
        tensors["kernel"], tensors["bias"], (2, 1), (1, 2), (2, 1), 2, 3)
    want = reference.deform_conv2d(**tensors, strides=(2, 1), pads=(2, 1, 1, 2),
                                   dilations=(1, 2), groups=2, deformable_groups=3)
    assert_close(got, want)


@pytest.mark.parametrize("mask", [True, False])
def test_bands_of_rows_give_the_whole_output_and_gradients(monkeypatch, mask, rng):
    """A column budget of a few rows splits the output into bands (the last one
    short), each recomputed for the gradient: the same values and gradients as one
    band."""
    case = make_case(rng, batch=2, size=(11, 7), channels=4, filters=3, strides=(2, 1),
                     padding="same", offset_scale=2.0, mask=mask)
    upstream = rng.normal(size=case.output_shape)
    whole = op_with_grads(case, upstream, implementation="composite")
    row_bytes = 2 * 7 * 9 * 4 * 8  # batch * Wo * taps * channels * float64
    monkeypatch.setattr(deform_conv_module, "_COMPOSITE_COLUMN_BYTES", 2 * row_bytes)
    traced = []
    monkeypatch.setattr(tf, "recompute_grad",
                        lambda f, real=tf.recompute_grad: traced.append(f) or real(f))
    banded = op_with_grads(case, upstream, implementation="composite")
    assert len(traced) == 3  # 6 output rows in bands of 2
    assert_close(banded[0], whole[0], what="output")
    for name, grad in whole[1].items():
        assert_close(banded[1][name], grad, what=f"gradient of {name}")
