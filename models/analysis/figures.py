"""Pictures of the spatial-support analysis (`keras_dcn.analysis`), like Figures 1 and 2
of the paper: panels of one image with one modality drawn on it, laid out in a grid.

Every panel is the RGB image `[H, W, 3]` (uint8) enlarged `scale` times and dimmed,
with:

* `receptive_field_panel`: the effective receptive field `[H, W]` (values in [0, 1])
  as a colour map (square-root scale, so that weak tails show);
* `locations_panel`: points `[P, 2]` `(y, x)` in image pixels as dots coloured and
  sized by their weight `[P]` relative to the largest (square-root scale, strongest
  drawn last);
* `region_panel`: the image inside a saliency region `[H, W]` (bool), the rest dark.

`mark_point` / `mark_box` add the analysed node (a cross) or RoI (a rectangle),
`caption` a line of text below a panel; `grid(rows, row_titles, column_titles)`
assembles panels of equal size with titles.
"""

from typing import Optional, Sequence

import cv2
import numpy as np

SCALE = 3
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TITLE_HEIGHT = 24
_ROW_TITLE_WIDTH = 150
_WHITE = (255, 255, 255)


def _base(image: np.ndarray, scale: int, brightness: float = 0.6) -> np.ndarray:
    big = cv2.resize(np.asarray(image, np.uint8), None, fx=scale, fy=scale,
                     interpolation=cv2.INTER_NEAREST)
    return (big.astype(np.float32) * brightness).astype(np.uint8)


def _colors(values: np.ndarray) -> np.ndarray:
    """RGB uint8 `[..., 3]` of values in [0, 1] (the 'jet' colour map)."""
    levels = np.clip(np.round(np.asarray(values) * 255), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_JET).reshape(
        levels.shape + (3,))
    return bgr[..., ::-1]


def receptive_field_panel(image: np.ndarray, field: np.ndarray,
                          scale: int = SCALE) -> np.ndarray:
    """The image with the effective receptive field `[H, W]` drawn over it."""
    panel = _base(image, scale).astype(np.float32)
    values = np.sqrt(np.clip(field, 0, 1))
    big = cv2.resize(values.astype(np.float32), None, fx=scale, fy=scale,
                     interpolation=cv2.INTER_NEAREST)
    alpha = (0.85 * big)[..., None]
    return (panel * (1 - alpha) + _colors(big).astype(np.float32) * alpha).astype(np.uint8)


def locations_panel(image: np.ndarray, points: np.ndarray, weights: np.ndarray,
                    scale: int = SCALE, radius: int = 4) -> np.ndarray:
    """The image with `points` `[P, 2]` `(y, x)` drawn as dots whose colour and size
    grow with `weights` (square-root scale, up to `radius` pixels)."""
    panel = _base(image, scale, brightness=0.45)
    points = np.asarray(points, np.float32).reshape(-1, 2)
    weights = np.asarray(weights, np.float32).reshape(-1)
    if not len(points) or weights.max() <= 0:
        return panel
    relative = np.sqrt(weights / weights.max())
    colors = _colors(relative)
    for index in np.argsort(relative, kind="stable"):
        y, x = (points[index] + 0.5) * scale
        color = tuple(int(c) for c in colors[index])
        size = 1 + int(round((radius - 1) * relative[index]))
        cv2.circle(panel, (int(round(x)), int(round(y))), size, color, -1, cv2.LINE_AA)
    return panel


def region_panel(image: np.ndarray, region: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """The image inside `region` (bool `[H, W]`), the rest dark, the border outlined."""
    big = cv2.resize(np.asarray(image, np.uint8), None, fx=scale, fy=scale,
                     interpolation=cv2.INTER_NEAREST)
    inside = cv2.resize(region.astype(np.uint8), None, fx=scale, fy=scale,
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    panel = (big.astype(np.float32) * 0.15).astype(np.uint8)
    panel[inside] = big[inside]
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(panel, contours, -1, (255, 255, 0), 1)
    return panel


def mark_point(panel: np.ndarray, point, scale: int = SCALE) -> np.ndarray:
    """Draws a white cross at `point` `(y, x)` (image pixels) on `panel` in place."""
    y, x = (np.asarray(point, np.float32) + 0.5) * scale
    cv2.drawMarker(panel, (int(round(x)), int(round(y))), _WHITE, cv2.MARKER_CROSS,
                   4 * scale, 2)
    return panel


def mark_box(panel: np.ndarray, box, scale: int = SCALE) -> np.ndarray:
    """Draws `box` `(y1, x1, y2, x2)` (image pixels, corners) on `panel` in place."""
    y1, x1, y2, x2 = (float(v) * scale for v in box)
    cv2.rectangle(panel, (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2))),
                  _WHITE, 1, cv2.LINE_AA)
    return panel


def caption(panel: np.ndarray, text: str, height: int = 18) -> np.ndarray:
    """The panel with a white strip below it holding `text` (a new array)."""
    strip = np.full((height, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height - 5), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([panel, strip], axis=0)


def _title(text: str, width: int, height: int = _TITLE_HEIGHT) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    for index, line in enumerate(text.split("\n")):
        cv2.putText(strip, line, (4, 16 + 16 * index), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def grid(rows: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str],
         column_titles: Sequence[str], heading: Optional[str] = None,
         gap: int = 4) -> np.ndarray:
    """Panels (all of one size) in rows, titled; returns an RGB uint8 picture."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    total_width = _ROW_TITLE_WIDTH + columns * (width + gap)
    lines = []
    if heading:
        lines.append(_title(heading, total_width, _TITLE_HEIGHT + 8))
    header = [_title("", _ROW_TITLE_WIDTH)]
    for title in column_titles:
        header += [_title(title, width), np.full((_TITLE_HEIGHT, gap, 3), 255, np.uint8)]
    lines.append(np.concatenate(header, axis=1)[:, :total_width])
    for row, title in zip(rows, row_titles):
        cells = [_title(title, _ROW_TITLE_WIDTH, height)]
        for panel in row:
            cells += [panel, np.full((height, gap, 3), 255, np.uint8)]
        line = np.concatenate(cells, axis=1)
        padded = np.full((height + gap, total_width, 3), 255, np.uint8)
        padded[:height, :line.shape[1]] = line[:, :total_width]
        lines.append(padded)
    return np.concatenate(lines, axis=0)
