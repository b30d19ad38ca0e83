"""models.data.octave_anchors: anchors whose scales are an octave apart (the Faster
R-CNN's single-level RPN), against boxes written out here, and the swap of the
generator in Model Garden's parser and serving module."""

import numpy as np
import tensorflow as tf
from official.vision.dataloaders import maskrcnn_input
from official.vision.ops import anchor

from models.data.octave_anchors import OctaveAnchorGenerator, octave_anchors


def reference_anchors(level, sizes, aspect_ratios, image_size):
    """`[H, W, A * 4]`: at each cell centre, for each size then each ratio (width /
    height), the box of area size**2 with that ratio, (y1, x1, y2, x2)."""
    stride = 2 ** level
    rows, cols = -(-image_size[0] // stride), -(-image_size[1] // stride)
    out = np.zeros((rows, cols, len(sizes) * len(aspect_ratios) * 4))
    for r in range(rows):
        for c in range(cols):
            y, x = (r + 0.5) * stride, (c + 0.5) * stride
            boxes = []
            for size in sizes:
                for ratio in aspect_ratios:
                    half_w, half_h = size * ratio ** 0.5 / 2, size / ratio ** 0.5 / 2
                    boxes += [y - half_h, x - half_w, y + half_h, x + half_w]
            out[r, c] = boxes
    return out


def test_sizes_are_an_octave_apart():
    # The paper's Faster R-CNN: conv4 (stride 16), 32 ... 512 pixels, 3 ratios.
    boxes = OctaveAnchorGenerator(4, 4, 5, [0.5, 1.0, 2.0], 2.0)((96, 64))
    assert list(boxes) == ["4"]
    want = reference_anchors(4, [32, 64, 128, 256, 512], [0.5, 1.0, 2.0], (96, 64))
    assert boxes["4"].shape == want.shape == (6, 4, 60)
    np.testing.assert_allclose(boxes["4"].numpy(), want, rtol=1e-6, atol=1e-4)


def test_several_levels_and_one_scale_match_model_garden():
    ours = OctaveAnchorGenerator(2, 3, 1, [1.0, 2.0], 4.0)((64, 64))
    garden = anchor.build_anchor_generator(2, 3, 1, [1.0, 2.0], 4.0)((64, 64))
    assert list(ours) == list(garden) == ["2", "3"]
    for level in ours:
        np.testing.assert_array_equal(ours[level].numpy(), garden[level].numpy())
    np.testing.assert_allclose(
        ours["3"].numpy(), reference_anchors(3, [32], [1.0, 2.0], (64, 64)), atol=1e-4)


def test_parser_module_uses_the_generator_inside_the_context_only():
    with octave_anchors(maskrcnn_input, True):
        generator = maskrcnn_input.anchor.build_anchor_generator(4, 4, 3, [1.0], 1.0)
        assert isinstance(generator, OctaveAnchorGenerator)
        # Everything else of the module is Model Garden's.
        assert maskrcnn_input.anchor.RpnAnchorLabeler is anchor.RpnAnchorLabeler
    assert maskrcnn_input.anchor is anchor
    with octave_anchors(maskrcnn_input, False):
        assert maskrcnn_input.anchor is anchor
    boxes = generator((32, 32))["4"]
    np.testing.assert_allclose(
        boxes.numpy(), reference_anchors(4, [16, 32, 64], [1.0], (32, 32)), atol=1e-4)
    assert boxes.dtype == tf.float32
