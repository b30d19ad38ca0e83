"""Draws Mask R-CNN detections and ground truth (boxes, class labels, masks) on images.

`draw_detections(image, boxes, classes, scores, masks)` takes one image's
detections in its own pixel coordinates: boxes `[N, 4]` (y1, x1, y2, x2), masks
`[N, m, m]` box-relative probabilities (Model Garden's `detection_masks`), and
returns an RGB uint8 picture; `draw_instances` draws instances with image-sized
masks (ground truth). `upscale`, `titled` and `grid` lay pictures out for people:
whole-factor enlargement, a title band, tiles in rows.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from official.vision.ops import mask_ops


def _palette(count: int) -> np.ndarray:
    """`count` well separated RGB colours."""
    hues = (np.arange(count) * 0.618034) % 1.0
    hsv = np.stack([hues * 179, np.full(count, 200), np.full(count, 255)], -1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def paste_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int
                ) -> np.ndarray:
    """Box-relative mask probabilities `[N, m, m]` -> boolean image masks
    `[N, height, width]` (Model Garden's pasting, threshold 0.5)."""
    if len(masks) == 0:
        return np.zeros((0, height, width), bool)
    xywh = np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                     boxes[:, 2] - boxes[:, 0]], axis=-1)
    pasted = mask_ops.paste_instance_masks(np.asarray(masks, np.float32), xywh, height,
                                           width)
    return pasted.astype(bool)


def _label(canvas: np.ndarray, text: str, x: int, y: int, color, scale: float):
    """`text` on a filled box of `color` whose lower left corner is near `(x, y)`."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = int(min(max(x, 0), max(canvas.shape[1] - w - 2, 0)))
    y = int(min(max(y, h + base + 1), canvas.shape[0] - 1))
    cv2.rectangle(canvas, (x, y - h - base - 1), (x + w + 2, y), color, -1)
    ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1,
                cv2.LINE_AA)


def draw_instances(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                   masks: Optional[np.ndarray] = None,
                   labels: Optional[Sequence[str]] = None, alpha: float = 0.45
                   ) -> np.ndarray:
    """An RGB uint8 copy of `image` with instances drawn: masks `[N, H, W]` (bool,
    image-sized) tinted by class, boxes `[N, 4]` (y1, x1, y2, x2) and `labels`."""
    canvas = np.array(image, np.uint8, copy=True)
    classes = np.asarray(classes, np.int64)
    colors = _palette(max(int(classes.max(initial=0)) + 1, 8))
    if masks is not None:
        for mask, cls in zip(np.asarray(masks, bool), classes):
            color = colors[int(cls)].astype(np.float32)
            canvas[mask] = (canvas[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
    text_scale = max(0.35, min(canvas.shape[:2]) / 600)
    for index, ((y1, x1, y2, x2), cls) in enumerate(zip(np.asarray(boxes), classes)):
        color = tuple(int(c) for c in colors[int(cls)])
        cv2.rectangle(canvas, (int(round(x1)), int(round(y1))),
                      (int(round(x2)), int(round(y2))), color, 1, cv2.LINE_AA)
        if labels is not None:
            _label(canvas, labels[index], int(round(x1)), int(round(y1)) - 1, color,
                   text_scale)
    return canvas


def class_name(cls: int, class_names: Optional[Sequence[str]] = None) -> str:
    """The name of class id `cls`, or the id itself."""
    cls = int(cls)
    return class_names[cls] if class_names and 0 <= cls < len(class_names) else str(cls)


def draw_detections(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                    scores: np.ndarray, masks: Optional[np.ndarray] = None,
                    class_names: Optional[Sequence[str]] = None,
                    score_threshold: float = 0.5, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 `[H, W, 3]` copy of `image` with the detections above
    `score_threshold` drawn (masks tinted per class, boxes, "name score" labels)."""
    height, width = np.asarray(image).shape[:2]
    keep = np.asarray(scores) >= score_threshold
    boxes, classes, scores = np.asarray(boxes)[keep], np.asarray(classes)[keep], \
        np.asarray(scores)[keep]
    pasted = None
    if masks is not None:
        pasted = paste_masks(np.asarray(masks)[keep], boxes, height, width)
    labels = [f"{class_name(cls, class_names)} {score:.2f}"
              for cls, score in zip(classes, scores)]
    return draw_instances(image, boxes, classes, pasted, labels, alpha)


def upscale(image: np.ndarray, min_side: int) -> Tuple[np.ndarray, float]:
    """`(image scaled by a whole factor to a shorter side of at least min_side,
    the factor)`; pixels are repeated, so edges stay sharp."""
    factor = max(1, -(-int(min_side) // min(np.asarray(image).shape[:2])))
    if factor == 1:
        return np.asarray(image), 1.0
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1), float(factor)


def titled(image: np.ndarray, title: str, height: int = 22) -> np.ndarray:
    """`image` with a white band above it holding `title`."""
    band = np.full((height, image.shape[1], 3), 255, np.uint8)
    cv2.putText(band, title, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def grid(tiles: Sequence[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Tiles (RGB uint8, any sizes) in rows of `columns`, white between them."""
    if not tiles:
        raise ValueError("grid needs at least one tile")
    height = max(t.shape[0] for t in tiles)
    width = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255,
                     np.uint8)
    for index, tile in enumerate(tiles):
        top = gap + (index // columns) * (height + gap)
        left = gap + (index % columns) * (width + gap)
        canvas[top:top + tile.shape[0], left:left + tile.shape[1]] = tile
    return canvas
