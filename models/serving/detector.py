"""Runs an exported deformable Mask R-CNN SavedModel on images and draws the result.

Importing this module imports `keras_dcn`, which registers the custom ops the
SavedModel calls; nothing else of the training code is needed. `Detector` resizes
nothing itself: the SavedModel's own preprocessing scales an image to fit
`input_size` (read from the export's `params.yaml`), and `Detector.__call__` maps the
boxes back to the input image's pixels.
"""

import os
from typing import Dict

import numpy as np
import tensorflow as tf
import yaml

import keras_dcn  # noqa: F401  registers the deformable ops used by the SavedModel

from models.common import image_files
from models.serving import drawing


class Detector:
    """A loaded SavedModel of `models.serving.detection`, run on one RGB image at a time.

    Args:
      saved_model_dir: `EXPORT_DIR/saved_model`.
      input_size: `(height, width)` the model resizes to; default read from
        `EXPORT_DIR/params.yaml`.
    """

    def __init__(self, saved_model_dir: str, input_size=None):
        self.saved_model_dir = saved_model_dir
        self.model = tf.saved_model.load(saved_model_dir)
        self.signature = self.model.signatures["serving_default"]
        if input_size is None:
            params_path = os.path.join(os.path.dirname(saved_model_dir.rstrip("/")),
                                       "params.yaml")
            with open(params_path) as f:
                input_size = yaml.safe_load(f)["task"]["model"]["input_size"][:2]
        self.input_size = tuple(int(v) for v in input_size)

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
        # Model Garden's resize: scale to fit input_size, rounded to whole pixels.
        fit = min(self.input_size[0] / height, self.input_size[1] / width)
        scale = np.array([round(height * fit) / height, round(width * fit) / width] * 2)
        result = {
            "boxes": out["detection_boxes"][0, :count] / scale,
            "classes": out["detection_classes"][0, :count].astype(np.int64),
            "scores": out["detection_scores"][0, :count],
        }
        if "detection_masks" in out:
            result["masks"] = out["detection_masks"][0, :count]
        return result


def predict_and_draw(saved_model_dir: str, image_path: str, out_path: str,
                     score_threshold: float = 0.5, class_names=None) -> dict:
    """Loads the SavedModel, detects on `image_path`, writes the picture to `out_path`."""
    detector = Detector(saved_model_dir)
    image = image_files.read_rgb(image_path)
    detections = detector(image)
    picture = drawing.draw_detections(
        image, detections["boxes"], detections["classes"], detections["scores"],
        detections.get("masks"), class_names=class_names,
        score_threshold=score_threshold)
    image_files.save_png(out_path, picture)
    return detections

