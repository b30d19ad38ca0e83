"""keras_dcn.analysis.saliency: the region of a node that reads one pixel is that
pixel's patch; on a node whose error falls monotonically as patches are revealed, the
binary search finds the same smallest region as an exhaustive numpy search."""

import math

import keras
import numpy as np
import pytest

from keras_dcn import analysis
from keras_dcn.analysis import saliency


def test_node_of_one_pixel_has_that_pixels_patch(rng):
    image = rng.uniform(0, 0.05, (30, 27, 3))
    image[13, 21] = [0.9, 0.7, 0.8]

    def node(images):
        return 2.0 * images[0, 13, 21, :]

    region = analysis.error_bounded_saliency_region(node, image, patch_size=4)
    expected = np.zeros((30, 27), bool)
    expected[12:16, 20:24] = True
    np.testing.assert_array_equal(region.mask, expected)
    assert region.patches == 1 and region.error == 0.0
    assert region.order[0] == 3 * math.ceil(27 / 4) + 5  # patch row 3, column 5
    patches = math.ceil(30 / 4) * math.ceil(27 / 4)
    assert region.evaluations <= math.ceil(math.log2(patches + 1)) + 1


def _reference_region(weights, image, fill, patch, bound):
    """Exhaustive search: patches ranked by the summed |weights|, the first count
    whose relative error is within the bound."""
    height, width = weights.shape
    rows, cols = math.ceil(height / patch), math.ceil(width / patch)
    scores = np.array([[np.abs(weights[r * patch:(r + 1) * patch,
                                       c * patch:(c + 1) * patch]).sum()
                        for c in range(cols)] for r in range(rows)]).ravel()
    order = sorted(range(rows * cols), key=lambda i: (-scores[i], i))
    full = np.sum(weights * image)
    for count in range(rows * cols + 1):
        mask = np.zeros((height, width), bool)
        for index in order[:count]:
            r, c = divmod(index, cols)
            mask[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = True
        value = np.sum(weights * np.where(mask, image, fill))
        error = abs(value - full) / abs(full)
        if error <= bound:
            return mask, count, error


@pytest.mark.parametrize("bound", [0.05, 0.1, 0.3])
def test_binary_search_matches_exhaustive_search(bound, rng):
    height, width, patch = 23, 19, 5
    yy, xx = np.mgrid[:height, :width]
    weights = np.exp(-((yy - 9.0) ** 2 + (xx - 12.0) ** 2) / 30.0)  # positive, smooth
    image = rng.uniform(0.5, 1.0, (height, width))  # above the fill: monotone error

    def node(images):
        return keras.ops.sum(images[0, :, :, 0] * weights)

    region = analysis.error_bounded_saliency_region(
        node, image[..., None], error_bound=bound, patch_size=patch, fill=0.0)
    mask, count, error = _reference_region(weights, image, 0.0, patch, bound)
    assert region.patches == count
    np.testing.assert_array_equal(region.mask, mask)
    assert region.error == pytest.approx(error, rel=1e-5)
    assert region.error <= bound


def test_default_fill_is_the_mean_colour(rng):
    image = rng.uniform(0, 1, (8, 8, 3))
    seen = []

    def node(images):
        seen.append(np.asarray(images))
        return keras.ops.sum(images[0, :4, :4], axis=(0, 1))

    analysis.error_bounded_saliency_region(node, image, patch_size=4,
                                           importance=np.ones((8, 8)))
    hidden = [s[0, 4:, 4:] for s in seen[1:] if not np.allclose(s[0, 4:, 4:], image[4:, 4:])]
    assert hidden
    np.testing.assert_allclose(hidden[0], np.broadcast_to(image.mean(axis=(0, 1)),
                                                          (4, 4, 3)), rtol=1e-6)


def test_bad_arguments():
    image = np.ones((6, 6, 1))
    node = lambda images: images[0, 0, 0]  # noqa: E731
    with pytest.raises(ValueError, match=r"error_bound must lie in \(0, 1\)"):
        analysis.error_bounded_saliency_region(node, image, error_bound=1.5)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        analysis.error_bounded_saliency_region(node, image, patch_size=0)
    with pytest.raises(ValueError, match=r"importance must have shape \(6, 6\)"):
        analysis.error_bounded_saliency_region(node, image, importance=np.ones((5, 6)))
    with pytest.raises(ValueError, match="response on the full image is 0"):
        analysis.error_bounded_saliency_region(lambda images: images[0, 0, 0] * 0, image)


def test_patch_helpers():
    importance = np.arange(20.0).reshape(4, 5)
    expected_scores = [[0 + 1 + 2 + 5 + 6 + 7 + 10 + 11 + 12, 3 + 4 + 8 + 9 + 13 + 14],
                       [15 + 16 + 17, 18 + 19]]
    np.testing.assert_allclose(saliency.patch_scores(importance, 3), expected_scores)
    mask = saliency.region_mask(np.array([3, 0]), 1, (4, 5), 3)
    expected = np.zeros((4, 5), bool)
    expected[3:, 3:] = True
    np.testing.assert_array_equal(mask, expected)
