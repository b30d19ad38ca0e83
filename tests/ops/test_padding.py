"""keras_dcn.ops._padding, the padding arithmetic the op and the layers share: the
accepted forms, and output sizes and SAME pads equal to tf.nn.conv2d's."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import _padding


@pytest.mark.parametrize("padding, mode, pads", [
    ("valid", "VALID", []),
    ("SAME", "SAME", []),
    (0, "EXPLICIT", [0, 0, 0, 0]),
    (2, "EXPLICIT", [2, 2, 2, 2]),
    ((2, 1), "EXPLICIT", [2, 2, 1, 1]),
    ([[1, 0], [0, 3]], "EXPLICIT", [1, 0, 0, 3]),
    ((np.int64(1), 2), "EXPLICIT", [1, 1, 2, 2]),
])
def test_parse_accepted_forms(padding, mode, pads):
    assert _padding.parse(padding) == (mode, pads)


@pytest.mark.parametrize("padding", [
    "full", "", -1, (1, -1), ((1, 0), (0, -2)), (1, 2, 3), ((1,), (2, 3)), 1.5, None, True,
    ((1, 1), 2), (True, 1),
])
def test_bad_forms_raise(padding):
    with pytest.raises(ValueError, match="padding must be"):
        _padding.parse(padding)
    with pytest.raises(ValueError, match="padding must be"):
        _padding.standardize(padding)


@pytest.mark.parametrize("padding, standard", [
    ("Valid", "valid"), ("SAME", "same"), (3, 3), ([2, 1], (2, 1)),
    ([[1, 0], [0, 2]], ((1, 0), (0, 2))), (((1, 0), (0, 2)), ((1, 0), (0, 2))),
])
def test_standardize(padding, standard):
    assert _padding.standardize(padding) == standard


PADDINGS = ["valid", "same", 1, (0, 2), ((2, 0), (1, 3))]


def _tf_padding(padding):
    """`padding` in tf.nn.conv2d's terms."""
    mode, pads = _padding.parse(padding)
    return mode if mode != "EXPLICIT" else [[0, 0], pads[:2], pads[2:], [0, 0]]


@pytest.mark.parametrize("padding", PADDINGS)
def test_output_size_and_pads_are_those_of_conv2d(padding, rng):
    for size, kernel_size, strides, dilations in itertools.product(
            [(7, 6), (4, 9), (1, 5)], [(3, 3), (2, 1)], [(1, 1), (2, 3)], [(1, 1), (2, 1)]):
        inputs = tf.constant(rng.normal(size=(1, *size, 2)))
        kernel = tf.constant(rng.normal(size=(*kernel_size, 2, 3)))
        expected = _padding.output_size(size, kernel_size, strides, dilations, padding)
        try:
            reference = tf.nn.conv2d(inputs, kernel, strides, _tf_padding(padding),
                                     dilations=dilations)
        except (ValueError, tf.errors.InvalidArgumentError):
            # The dilated kernel is larger than the padded input.
            assert 0 in expected, (size, kernel_size, strides, dilations)
            continue
        assert expected == tuple(reference.shape[1:3]), (size, kernel_size, strides, dilations)
        # The resolved pads, given explicitly, compute the same convolution.
        top, bottom, left, right = _padding.resolve(size, kernel_size, strides, dilations,
                                                    padding)
        explicit = tf.nn.conv2d(inputs, kernel, strides,
                                [[0, 0], [top, bottom], [left, right], [0, 0]],
                                dilations=dilations)
        np.testing.assert_allclose(explicit, reference, rtol=1e-12, atol=1e-12)


def test_output_size_of_unknown_and_empty_inputs():
    assert _padding.output_size((None, 7), (3, 3), (1, 2), (1, 1), "valid") == (None, 3)
    assert _padding.output_size((5, 7), (3, None), (1, 1), (1, 1), "same") == (5, None)
    assert _padding.output_size((0, 7), (3, 3), (2, 2), (1, 1), "same") == (0, 4)
    assert _padding.output_size((2, 7), (3, 3), (1, 1), (1, 1), "valid") == (0, 5)
    assert _padding.output_size((2, 7), (3, 3), (1, 1), (1, 1), (1, 0)) == (2, 5)


def test_same_puts_the_odd_pixel_after():
    # 6 columns, kernel 3, stride 2: 3 outputs reading 7 columns, one padded after.
    assert _padding.resolve((7, 6), (3, 3), (2, 2), (1, 1), "same") == (1, 1, 0, 1)
    assert _padding.resolve((7, 6), (3, 3), (2, 2), (1, 1), "valid") == (0, 0, 0, 0)
    assert _padding.resolve((7, 6), (3, 3), (2, 2), (1, 1), (2, 1)) == (2, 2, 1, 1)
