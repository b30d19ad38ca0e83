"""keras_dcn.ops.deform_conv2d against the plain-TensorFlow reference (tests/reference.py):
outputs and the gradients of every tensor argument, for every option, dtype and data
format, on cases large enough to split the work into many tiles, and on random
configurations."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ops.conv_cases import (
    GRID, assert_matches_reference, make_case, pair, resolve_padding, sampling_points)
from tests.ops.helpers import DATA_FORMATS, DTYPES, IMPLEMENTATIONS

@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", GRID)
def test_matches_reference(config, dtype, data_format, implementation, rng):
    case = make_case(rng, **config)
    y, x = sampling_points(case)
    outside = (y <= -1) | (y >= case.inputs.shape[1]) | (x <= -1) | (x >= case.inputs.shape[2])
    assert outside.any() and not outside.all()  # both kinds of sampling points occur
    assert_matches_reference(case, rng, dtype, data_format, implementation)


MANY_TILES = [
    pytest.param(dict(channels=48, filters=8, groups=2, deformable_groups=3),
                 id="groups_deformable_groups"),
    # 40 filters: a second, partly filled panel of the packed kernel; 5 channels: an
    # odd product depth (9 * 5), so bfloat16 pairs end with a lone value.
    pytest.param(dict(channels=5, filters=40), id="wide_odd_depth"),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", MANY_TILES)
def test_matches_reference_over_many_tiles(config, dtype, implementation, rng):
    """Enough output pixels and channels that the work is split into several row
    blocks and micro-kernel tiles (with partial ones at every edge)."""
    case = make_case(rng, batch=2, size=(34, 33), padding=1, offset_scale=3.0, **config)
    assert_matches_reference(case, rng, dtype, implementation=implementation)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_with_odd_output_pixels(dtype, rng):
    """3 images of 7x7 output pixels: an odd row count, so the bfloat16 row pairs
    of the kernel gradient's column matrix end with a row alone."""
    case = make_case(rng, batch=3, size=(7, 7), channels=8, filters=6, padding=1)
    assert_matches_reference(case, rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_over_chunks_of_several_images(dtype, rng):
    """Small maps put several whole images in one chunk of the column matrix (at most
    2**21 values): 5 images of 4x4 pixels with 4096 channels go in chunks of 3 and 2
    images, and the kernel gradient of a chunk adds up slabs of its rows; every row
    must read its own image and write its own image's gradient."""
    case = make_case(rng, batch=5, size=(4, 4), channels=4096, filters=3, padding=1,
                     offset_scale=3.0)
    assert_matches_reference(case, rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_over_chunks_of_one_image(dtype, rng):
    """Large maps cut one image into several chunks: 2 images of 24x24 pixels with
    1024 channels go in chunks of 192 of an image's 576 rows. The input gradient of an
    image must be zeroed once, before its first chunk, and summed over all of them."""
    case = make_case(rng, batch=2, size=(24, 24), channels=1024, filters=3, padding=1,
                     offset_scale=3.0)
    assert_matches_reference(case, rng, dtype)


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
    assert_matches_reference(case, rng, tf.float64, drawn["data_format"])
