"""Draws Mask R-CNN detections (boxes, class labels, scores, masks) on an image.

`draw_detections(image, boxes, classes, scores, masks)` takes one image's
detections in its own pixel coordinates: boxes `[N, 4]` (y1, x1, y2, x2), masks
`[N, m, m]` box-relative probabilities (Model Garden's `detection_masks`), and
returns an RGB uint8 picture.
"""

from typing import Optional, Sequence

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


def draw_detections(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                    scores: np.ndarray, masks: Optional[np.ndarray] = None,
                    class_names: Optional[Sequence[str]] = None,
                    score_threshold: float = 0.5, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 `[H, W, 3]` copy of `image` with the detections above
    `score_threshold` drawn (masks tinted per class, boxes, "name score" labels)."""
    canvas = np.array(image, np.uint8, copy=True)
    height, width = canvas.shape[:2]
    keep = np.asarray(scores) >= score_threshold
    boxes, classes, scores = np.asarray(boxes)[keep], np.asarray(classes)[keep], \
        np.asarray(scores)[keep]
    colors = _palette(max(int(classes.max(initial=0)) + 1, 8))
    if masks is not None and len(boxes):
        pasted = paste_masks(np.asarray(masks)[keep], boxes, height, width)
        for mask, cls in zip(pasted, classes):
            color = colors[int(cls)].astype(np.float32)
            canvas[mask] = (canvas[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
    for (y1, x1, y2, x2), cls, score in zip(boxes, classes, scores):
        color = tuple(int(c) for c in colors[int(cls)])
        cv2.rectangle(canvas, (int(round(x1)), int(round(y1))),
                      (int(round(x2)), int(round(y2))), color, 1, cv2.LINE_AA)
        name = class_names[int(cls)] if class_names and 0 <= int(cls) < len(class_names) \
            else str(int(cls))
        cv2.putText(canvas, f"{name} {score:.2f}", (int(x1), max(int(y1) - 3, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
    return canvas

