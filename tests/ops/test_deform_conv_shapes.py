"""Shapes of keras_dcn.ops.deform_conv2d: unknown batch and spatial sizes under
tf.function, the static output shapes a graph gets, and empty batches and images."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import deform_conv2d
from tests.ops.conv_cases import (
    make_case, op_with_grads, output_size, pair, resolve_padding, to_layout)
from tests.ops.helpers import DATA_FORMATS, zeros


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
