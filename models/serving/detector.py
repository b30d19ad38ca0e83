"""Runs an exported deformable Mask R-CNN SavedModel on images and draws the result.

Importing this module imports `keras_dcn`, which registers the custom ops the
SavedModel calls; nothing else of the training code is needed. `Detector` resizes
nothing itself: the SavedModel's own preprocessing scales an image (to fit
`input_size`, or by its shorter side, as the export's `params.yaml` says), and
`Detector.__call__` maps the boxes back to the input image's pixels.
"""

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import yaml

import keras_dcn  # noqa: F401  registers the deformable ops used by the SavedModel

from models.common import image_files
from models.data import coco_checks
from models.serving import drawing


def resized_size(height, width, input_size, short_side=0, long_side=0):
    """`(height, width)` of an image of `height x width` pixels after the exported
    model's resize: scaled to fit `input_size` (Model Garden's rule) or, with
    `short_side`, its shorter side to `short_side` unless its longer side would then
    pass `long_side` (`models.data.short_side_resize`); rounded to whole pixels."""
    if short_side:
        scale = short_side / min(height, width)
        if round(max(height, width) * scale) > long_side:
            scale = long_side / max(height, width)
    else:
        scale = min(input_size[0] / height, input_size[1] / width)
    return round(height * scale), round(width * scale)


class Detector:
    """A loaded SavedModel of `models.serving.detection`, run on one RGB image at a time.

    Args:
      saved_model_dir: `EXPORT_DIR/saved_model`.
      input_size: `(height, width)` the model resizes to; default read from
        `EXPORT_DIR/params.yaml`, as are the model's `short_side` and `long_side`
        (`resized_size`).
    """

    def __init__(self, saved_model_dir: str, input_size=None):
        self.saved_model_dir = saved_model_dir
        self.model = tf.saved_model.load(saved_model_dir)
        self.signature = self.model.signatures["serving_default"]
        params_path = os.path.join(os.path.dirname(saved_model_dir.rstrip("/")),
                                   "params.yaml")
        model = {}
        if os.path.exists(params_path) or input_size is None:
            with open(params_path) as f:
                model = yaml.safe_load(f)["task"]["model"]
        if input_size is None:
            input_size = model["input_size"][:2]
        self.input_size = tuple(int(v) for v in input_size)
        self.short_side = int(model.get("short_side", 0))
        self.long_side = int(model.get("long_side", 0))

    def raw(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """The signature's outputs for `image` uint8 `[H, W, 3]` (batch of one)."""
        outputs = self.signature(inputs=tf.constant(np.asarray(image, np.uint8)[None]))
        return {key: value.numpy() for key, value in outputs.items()}

    def __call__(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """Detections of `image` in its own pixels: boxes `[n, 4]` (y1, x1, y2, x2),
        classes `[n]`, scores `[n]`, masks `[n, m, m]` (box-relative)."""
        out = self.raw(image)
        count = int(out["num_detections"][0])
        height, width = image.shape[:2]
        resized = resized_size(height, width, self.input_size, self.short_side,
                               self.long_side)
        scale = np.array([resized[0] / height, resized[1] / width] * 2)
        result = {
            "boxes": out["detection_boxes"][0, :count] / scale,
            "classes": out["detection_classes"][0, :count].astype(np.int64),
            "scores": out["detection_scores"][0, :count],
        }
        if "detection_masks" in out:
            result["masks"] = out["detection_masks"][0, :count]
        return result


def coco_ground_truth(annotation_file: str) -> Dict[str, dict]:
    """Ground truth of a COCO instances JSON by image file name: `boxes` `[N, 4]`
    (y1, x1, y2, x2), `classes` `[N]`, `masks` `[N, H, W]` bool (None without
    segmentations)."""
    with open(annotation_file) as f:
        coco = json.load(f)
    by_image = {image["id"]: [] for image in coco["images"]}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    truth = {}
    for image in coco["images"]:
        annotations = by_image[image["id"]]
        boxes = np.array([[y, x, y + h, x + w] for x, y, w, h in
                          (a["bbox"] for a in annotations)], np.float32).reshape(-1, 4)
        masks = None
        if annotations and all("segmentation" in a for a in annotations):
            masks = np.stack([coco_checks.segmentation_to_mask(
                a["segmentation"], image["height"], image["width"]).astype(bool)
                for a in annotations])
        truth[image["file_name"]] = {
            "boxes": boxes, "masks": masks,
            "classes": np.array([a["category_id"] for a in annotations], np.int64)}
    return truth


def predict_and_draw(saved_model_dir: str, image_paths: Sequence[str], out_path: str,
                     score_threshold: float = 0.5, class_names=None,
                     annotation_file: Optional[str] = None, min_tile: int = 256,
                     columns: int = 2) -> List[dict]:
    """Loads the SavedModel, detects on each image and writes one picture to
    `out_path`: per image its detections at `score_threshold` or above, beside its
    ground truth when `annotation_file` (COCO JSON, images matched by file name) is
    given, each enlarged to a side of at least `min_tile` pixels; `columns` images a
    row. Returns the detections of each image (in its pixels)."""
    detector = Detector(saved_model_dir)
    truth = coco_ground_truth(annotation_file) if annotation_file else {}
    tiles, results = [], []
    for path in image_paths:
        image = image_files.read_rgb(path)
        detections = detector(image)
        results.append(detections)
        big, factor = drawing.upscale(image, min_tile)
        if annotation_file:
            gt = truth.get(os.path.basename(path))
            if gt is None:
                raise ValueError(f"{annotation_file} has no image named "
                                 f"{os.path.basename(path)!r}")
            masks = gt["masks"]
            if masks is not None and factor > 1:
                masks = drawing.upscale(masks.transpose(1, 2, 0), min_tile)[0] \
                    .transpose(2, 0, 1)
            labels = [drawing.class_name(c, class_names) for c in gt["classes"]]
            tiles.append(drawing.titled(drawing.draw_instances(
                big, gt["boxes"] * factor, gt["classes"], masks, labels),
                f"{os.path.basename(path)}: ground truth"))
        picture = drawing.draw_detections(
            big, detections["boxes"] * factor, detections["classes"],
            detections["scores"], detections.get("masks"), class_names=class_names,
            score_threshold=score_threshold)
        tiles.append(drawing.titled(picture, f"detections, score >= {score_threshold:g}"))
    per_image = 2 if annotation_file else 1
    columns = max(1, min(columns, len(image_paths)))
    image_files.save_png(out_path, drawing.grid(tiles, columns * per_image))
    return results
