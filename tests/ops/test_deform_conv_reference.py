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
    assert_matches_reference, make_case, pair, resolve_padding, sampling_points)
from tests.ops.helpers import DATA_FORMATS, DTYPES, IMPLEMENTATIONS


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
def test_matches_reference_over_chunks_of_several_images(dtype, rng):
    """Small maps put several whole images in one chunk of the column matrix (at most
    2**21 values): 5 images of 4x4 pixels with 4096 channels go in chunks of 3 and 2
    images, and the kernel gradient of a chunk adds up slabs of its rows; every row
    must read its own image and write its own image's gradient."""
    case = make_case(rng, batch=5, size=(4, 4), channels=4096, filters=3, padding=1,
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
