"""models.analysis.figures: every panel is the image enlarged pixel by pixel and dimmed,
with its modality drawn over the image pixels it belongs to; marks and captions add
to a panel; the grid lays equal panels out under their titles."""

import cv2
import numpy as np
import pytest

from models.analysis import figures

SCALE = 3


@pytest.fixture
def image(rng):
    """A 5 x 6 RGB image."""
    return rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)


def _enlarged(image):
    return np.repeat(np.repeat(image, SCALE, axis=0), SCALE, axis=1)


def _dimmed(image, brightness):
    return (_enlarged(image).astype(np.float32) * brightness).astype(np.uint8)


def _cell(row, col):
    """The panel pixels of image pixel (row, col), as a mask of a 5 x 6 image's panel."""
    mask = np.zeros((5 * SCALE, 6 * SCALE), bool)
    mask[row * SCALE:(row + 1) * SCALE, col * SCALE:(col + 1) * SCALE] = True
    return mask


def _near(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def test_receptive_field_panel_blends_the_colour_map_over_the_field(image):
    """A field of 1 at one pixel: that pixel's cell is 15% dimmed image + 85% the top
    of OpenCV's jet map; every other cell is the image dimmed to 60%."""
    field = np.zeros((5, 6))
    field[2, 3] = 1.0
    panel = figures.receptive_field_panel(image, field, scale=SCALE)
    dimmed = _dimmed(image, 0.6)
    cell = _cell(2, 3)
    np.testing.assert_array_equal(panel[~cell], dimmed[~cell])
    top = cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1]
    want = (dimmed[cell].astype(np.float32) * 0.15 + top.astype(np.float32) * 0.85)
    np.testing.assert_allclose(panel[cell], want, atol=1)


def test_locations_panel_draws_a_dot_at_each_point(image):
    """A point (y, x) in image pixels is a dot around ((y + 0.5) s, (x + 0.5) s) within
    `radius` + 2 pixels of it (the centre rounded to a pixel, antialiased edges);
    nothing else changes; without weight nothing is drawn."""
    dimmed = _dimmed(image, 0.45)
    empty = figures.locations_panel(image, np.zeros((1, 2)), np.zeros(1), scale=SCALE)
    np.testing.assert_array_equal(empty, dimmed)

    point = (2.0, 3.5)
    panel = figures.locations_panel(image, [point], [0.7], scale=SCALE, radius=4)
    changed = (panel != dimmed).any(axis=-1)
    centre = ((point[0] + 0.5) * SCALE, (point[1] + 0.5) * SCALE)
    assert changed[int(centre[0]), int(centre[1])]
    assert not (changed & ~_near(changed.shape, centre, 4 + 2)).any()


def test_region_panel_shows_the_image_inside_the_region_only(image):
    region = np.zeros((5, 6), bool)
    region[1:4, 2:5] = True
    panel = figures.region_panel(image, region, scale=SCALE)
    big = _enlarged(image)
    inside = np.zeros(panel.shape[:2], bool)
    inside[1 * SCALE + 1:4 * SCALE - 1, 2 * SCALE + 1:5 * SCALE - 1] = True  # off the outline
    outside = np.ones(panel.shape[:2], bool)
    outside[1 * SCALE - 1:4 * SCALE + 1, 2 * SCALE - 1:5 * SCALE + 1] = False
    np.testing.assert_array_equal(panel[inside], big[inside])
    np.testing.assert_array_equal(panel[outside],
                                  (big[outside].astype(np.float32) * 0.15).astype(np.uint8))


def test_marks_draw_around_their_place_only(image):
    dimmed = _dimmed(image, 0.6)
    crossed = figures.mark_point(dimmed.copy(), (1, 4), scale=SCALE)
    changed = (crossed != dimmed).any(axis=-1)
    centre = (1.5 * SCALE, 4.5 * SCALE)
    assert (crossed[int(centre[0]), int(centre[1])] == 255).all()  # white
    assert not (changed & ~_near(changed.shape, centre, 2 * SCALE + 2)).any()

    box = (1, 1, 4, 5)  # y1, x1, y2, x2 in image pixels
    boxed = figures.mark_box(dimmed.copy(), box, scale=SCALE)
    changed = (boxed != dimmed).any(axis=-1)
    y1, x1, y2, x2 = (v * SCALE for v in box)
    ring = np.zeros_like(changed)
    ring[y1 - 1:y2 + 2, x1 - 1:x2 + 2] = True
    ring[y1 + 2:y2 - 1, x1 + 2:x2 - 1] = False
    assert changed[y1, x1 + 3] and changed[y2, x2 - 3]
    assert not (changed & ~ring).any()


def test_caption_adds_a_strip_with_text_below(image):
    panel = _dimmed(image, 0.6)
    captioned = figures.caption(panel, "abc", height=18)
    assert captioned.shape == (panel.shape[0] + 18, panel.shape[1], 3)
    np.testing.assert_array_equal(captioned[:panel.shape[0]], panel)
    strip = captioned[panel.shape[0]:]
    assert (strip == 255).all(axis=-1).mean() > 0.5 and (strip < 128).any()


def test_grid_places_each_panel_after_the_titles(rng):
    """Rows of panels under a heading and a header row, right of a title column of 150
    pixels, with 4-pixel gaps: each panel sits at its place unchanged."""
    height, width, gap = 10, 12, 4
    rows = [[rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(3)]
            for _ in range(2)]
    picture = figures.grid(rows, ["a", "b"], ["x", "y", "z"], heading="title", gap=gap)
    top = (24 + 8) + 24  # heading, then column titles
    assert picture.shape == (top + 2 * (height + gap), 150 + 3 * (width + gap), 3)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            y, x = top + r * (height + gap), 150 + c * (width + gap)
            np.testing.assert_array_equal(picture[y:y + height, x:x + width], panel)
    without_heading = figures.grid(rows, ["a", "b"], ["x", "y", "z"], gap=gap)
    assert without_heading.shape[0] == picture.shape[0] - (24 + 8)
