"""keras_dcn.ops._deform_roi_pool_composite alone against the plain-TensorFlow reference,
and a NaN pixel reaching only the bins that sample it. The composite through
`deform_roi_pool`, on the op test grid: test_deform_roi_pool.py."""

import numpy as np
import tensorflow as tf

from keras_dcn.ops import _deform_roi_pool_composite
from keras_dcn.ops._array_namespace import TENSORFLOW
from tests import reference
from tests.ops.helpers import assert_close
from tests.ops.roi_pool_cases import make_case


def test_matches_the_reference_with_an_adaptive_grid(rng):
    features, rois, offsets, mask = make_case(rng, output_size=(2, 3), spatial_scale=0.5)
    kwargs = dict(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=0, gamma=0.2,
                  aligned=False)
    got = _deform_roi_pool_composite.deform_roi_pool(
        TENSORFLOW, tf.constant(features), tf.constant(rois), tf.constant(offsets),
        tf.constant(mask), **kwargs)
    assert_close(got, reference.deform_roi_pool(features, rois, offsets, mask, **kwargs))


def test_nan_pixel_reaches_only_the_bins_that_read_it():
    """Pixel (0, 0) is NaN; a RoI far from it reads finite values (the samples that
    miss the map read a row of zeros, not pixel 0 weighed by 0), one over it reads
    NaN."""
    features = np.ones((1, 8, 8, 2))
    features[0, 0, 0] = np.nan
    rois = tf.constant([[0, 4.0, 4.0, 7.0, 7.0], [0, 0.0, 0.0, 2.0, 2.0],
                        [0, 20.0, 20.0, 30.0, 30.0]], tf.float64)
    out = _deform_roi_pool_composite.deform_roi_pool(
        TENSORFLOW, tf.constant(features), rois, None, None, (2, 2), 1.0, 2, 0.1, True)
    assert np.all(out[0] == 1.0)
    assert np.isnan(out[1, 0, 0]).all()
    assert np.all(out[2] == 0.0)  # entirely outside: zeros
