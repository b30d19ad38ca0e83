"""models.serving.drawing: whole-factor enlargement, tiles in a grid, title bands,
instances tinted over exactly their masks, class names."""

import colorsys

import numpy as np
import pytest

from models.serving import drawing


def test_upscale_repeats_pixels_by_a_whole_factor(rng):
    """The factor is the smallest whole number bringing the shorter side to at least
    `min_side`; each pixel becomes a factor x factor block of itself; images already
    large enough come back as they are. Works for image-sized mask stacks too."""
    image = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    big, factor = drawing.upscale(image, 64)
    assert factor == 3.0 and big.shape == (90, 150, 3) and big.dtype == np.uint8
    blocks = big.reshape(30, 3, 50, 3, 3)
    for a in range(3):
        for b in range(3):
            np.testing.assert_array_equal(blocks[:, a, :, b], image)
    exact, factor = drawing.upscale(image, 60)
    assert factor == 2.0 and exact.shape == (60, 100, 3)
    same, factor = drawing.upscale(image, 30)
    assert factor == 1.0 and same.shape == image.shape
    np.testing.assert_array_equal(same, image)

    masks = rng.random((20, 24, 4)) < 0.5  # [H, W, N], as the ground truth is enlarged
    big_masks, factor = drawing.upscale(masks, 50)
    assert factor == 3.0 and big_masks.shape == (60, 72, 4) and big_masks.dtype == bool
    np.testing.assert_array_equal(big_masks[::3, ::3], masks)
    np.testing.assert_array_equal(big_masks[2::3, 1::3], masks)


def test_grid_lays_tiles_out_in_rows(rng):
    """Cells as large as the largest tile, `gap` white pixels around and between them,
    rows of `columns` tiles, each tile at its cell's top left, white elsewhere."""
    sizes = [(10, 12), (7, 15), (10, 5), (4, 4), (9, 9)]
    tiles = [rng.integers(0, 200, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    gap, columns = 3, 2
    canvas = drawing.grid(tiles, columns, gap=gap)
    cell_h, cell_w = 10, 15
    assert canvas.shape == (3 * (cell_h + gap) + gap, 2 * (cell_w + gap) + gap, 3)
    covered = np.zeros(canvas.shape[:2], bool)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = gap + row * (cell_h + gap), gap + column * (cell_w + gap)
        h, w = tile.shape[:2]
        np.testing.assert_array_equal(canvas[top:top + h, left:left + w], tile)
        covered[top:top + h, left:left + w] = True
    assert (canvas[~covered] == 255).all()
    one = drawing.grid(tiles[:1], 4)  # fewer tiles than columns: still `columns` wide
    assert one.shape == (10 + 8, 4 * (12 + 4) + 4, 3)
    with pytest.raises(ValueError):
        drawing.grid([], 2)


def test_titled_adds_a_band_above(rng):
    """A white band of `height` rows holding dark text, above the unchanged image."""
    image = rng.integers(0, 256, (40, 120, 3), dtype=np.uint8)
    out = drawing.titled(image, "ground truth", height=20)
    assert out.shape == (60, 120, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[20:], image)
    band = out[:20]
    assert (band.min(axis=2) < 100).sum() > 20  # text
    assert (band == 255).all(axis=2).mean() > 0.6  # mostly white
    assert drawing.titled(image, "").shape == (62, 120, 3)
    assert (drawing.titled(image, "")[:22] == 255).all()


def _masks(rng, height, width, count):
    masks = np.zeros((count, height, width), bool)
    for mask in masks:
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        mask[y:y + rng.integers(4, 9), x:x + rng.integers(4, 9)] = True
        mask &= rng.random((height, width)) < 0.8  # holes: only mask pixels count
    return masks


def test_draw_instances_tints_exactly_the_mask_pixels(rng):
    """Each instance blends its class colour over its mask pixels, in paint order
    (pixel * (1 - alpha) + colour * alpha, truncated to uint8, each blend over the
    previous one), and nothing else changes; instances of a class share a colour, near
    the palette's hue for it."""
    height, width = 36, 44
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    masks = _masks(rng, height, width, 4)
    classes = np.array([1, 3, 1, 6])
    no_boxes = np.zeros((0, 4))
    # With alpha 1 the masks take the colours themselves.
    solid = drawing.draw_instances(image, no_boxes, classes, masks, alpha=1.0)
    colours = {}
    for index, (mask, cls) in enumerate(zip(masks, classes)):
        visible = mask & ~masks[index + 1:].any(axis=0)  # later instances paint over
        values = np.unique(solid[visible], axis=0)
        assert len(values) == 1
        colours.setdefault(int(cls), values[0])
        np.testing.assert_array_equal(colours[int(cls)], values[0])
    assert len({tuple(colours[c]) for c in (1, 3, 6)}) == 3
    for cls in (1, 3, 6):
        # Golden-ratio hues, 8-bit OpenCV HSV (hue in whole steps of 1/180 turn).
        hue = int((cls * 0.618034) % 1.0 * 179) / 180
        want = np.array(colorsys.hsv_to_rgb(hue, 200 / 255, 1.0)) * 255
        np.testing.assert_allclose(colours[cls], want, atol=2)

    alpha = 0.45
    out = drawing.draw_instances(image, no_boxes, classes, masks, alpha=alpha)
    want = image.astype(np.float64)
    for mask, cls in zip(masks, classes):
        want[mask] = np.floor(want[mask] * (1 - alpha) + colours[int(cls)] * alpha)
    # Truncation of a float blend: within one unit of the exact value's floor (the
    # floating-point rounding of x.999... or x.000...).
    assert np.abs(out.astype(np.float64) - want).max() <= 1
    tinted = masks.any(axis=0)
    assert (np.abs(out.astype(np.float64) - want)[tinted] == 0).mean() > 0.95
    untouched = ~masks.any(axis=0)
    np.testing.assert_array_equal(out[untouched], image[untouched])
    np.testing.assert_array_equal(drawing.draw_instances(image, no_boxes, classes), image)


def test_draw_instances_outlines_boxes(rng):
    """Boxes (y1, x1, y2, x2) are drawn as 1-pixel outlines: every changed pixel is
    on or next to an outline, and most of the outline changes."""
    image = np.full((40, 50, 3), 30, np.uint8)
    boxes = np.array([[5, 6, 20, 30], [22, 10, 35, 45]], np.float64)
    out = drawing.draw_instances(image, boxes, np.array([2, 4]))
    changed = (out != image).any(axis=2)
    near = np.zeros_like(changed)
    outline = np.zeros_like(changed)
    for y1, x1, y2, x2 in boxes.astype(int):
        box_outline = np.zeros_like(changed)
        box_outline[y1:y2 + 1, [x1, x2]] = True
        box_outline[[y1, y2], x1:x2 + 1] = True
        outline |= box_outline
        grown = box_outline.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= np.roll(np.roll(box_outline, dy, 0), dx, 1)
        near |= grown
    assert changed.any() and not (changed & ~near).any()
    assert changed[outline].mean() > 0.9


def test_class_name():
    """A name from the list for ids inside it, otherwise the id as text."""
    names = ("background", "ellipse", "triangle")
    assert drawing.class_name(2, names) == "triangle"
    assert drawing.class_name(np.int64(1), names) == "ellipse"
    assert drawing.class_name(3, names) == "3"
    assert drawing.class_name(-1, names) == "-1"
    assert drawing.class_name(5) == "5"
    assert drawing.class_name(0, ()) == "0"
