"""Nodes of an image chosen from its COCO instance annotations, for the analysis.

`nodes_from_annotations` picks the deepest point of the largest instance (a
foreground node), the background point farthest from every instance (a background
node) and the largest instance's box (a RoI), in the image's pixels.
"""

import json
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def _instance_masks(annotations_path, image_path):
    """bool `[n, h, w]` instance masks and `[n, 4]` boxes `(y1, x1, y2, x2)` of the
    image whose file name is `image_path`'s, from a COCO instances JSON."""
    with open(annotations_path) as f:
        coco = json.load(f)
    name = os.path.basename(image_path)
    images = [im for im in coco["images"] if os.path.basename(im["file_name"]) == name]
    if not images:
        raise ValueError(f"--annotations {annotations_path} has no image named {name!r}")
    anns = [a for a in coco["annotations"] if a["image_id"] == images[0]["id"]]
    if not anns:
        raise ValueError(f"image {name!r} has no instance in {annotations_path}")
    masks, boxes = [], []
    for ann in anns:
        rle = dict(ann["segmentation"])
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        masks.append(mask_utils.decode(rle).astype(bool))
        x, y, w, h = ann["bbox"]
        boxes.append((y, x, y + h, x + w))
    return np.stack(masks), np.asarray(boxes, np.float64)


def nodes_from_annotations(annotations_path, image_path):
    """`{'foreground': (y, x), 'background': (y, x), 'roi': box}` in the image's pixels:
    the deepest point of the largest instance, the background point farthest from all
    instances, and the largest instance's box."""
    masks, boxes = _instance_masks(annotations_path, image_path)
    largest = int(np.argmax(masks.reshape(len(masks), -1).sum(axis=1)))

    def deepest(region):
        padded = np.pad(region.astype(np.uint8), 1)  # the image border counts as outside
        depth = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        return tuple(int(v) for v in np.unravel_index(np.argmax(depth), depth.shape))

    return {"foreground": deepest(masks[largest]),
            "background": deepest(~masks.any(axis=0)),
            "roi": tuple(float(v) for v in boxes[largest])}
