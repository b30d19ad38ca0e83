"""Exports a trained deformable Mask R-CNN as a SavedModel (Model Garden's export).

`DcnDetectionModule` is Model Garden's `DetectionModule` (image preprocessing,
anchors, `serve`) building its model with `models.modeling.factory`, without the
training-only branches (R-CNN feature mimicking). `export_saved_model` has
`export_saved_model_lib.export_inference_graph` write `EXPORT_DIR/saved_model`
(signature `serving_default`: `inputs` uint8 `[B, H, W, 3]` ->
`detection_boxes [B, N, 4]` (y1, x1, y2, x2 in the pixels of the image resized to
`input_size`), `detection_classes [B, N]`, `detection_scores [B, N]`,
`num_detections [B]`, `detection_masks [B, N, m, m]` (box-relative probabilities)),
`EXPORT_DIR/checkpoint` and `EXPORT_DIR/params.yaml`. Loading it needs the
keras_dcn ops: `import keras_dcn` before `tf.saved_model.load`
(`models.serving.detector`), unless it was exported with `standard_ops_only`.
"""

import contextlib
import os
from typing import Optional

import tf_keras

from official.core import config_definitions as cfg
from official.vision.serving import detection as mg_detection
from official.vision.serving import export_saved_model_lib

from keras_dcn import ops as dcn_ops
from models.common import runtime
from models.data.octave_anchors import octave_anchors
from models.data.short_side_resize import short_side_resize
from models.modeling import factory

SAVED_MODEL_SUBDIR = "saved_model"


class DcnDetectionModule(mg_detection.DetectionModule):
    """Model Garden's detection serving module for the deformable Mask R-CNN, resizing
    as `task.model.short_side` says, with the anchors `task.model.octave_anchor_scales`
    asks for."""

    def _build_inputs(self, image):
        model = self.params.task.model
        with short_side_resize(mg_detection, model.short_side, model.long_side,
                               model.input_size):
            return super()._build_inputs(image)

    def _build_anchor_boxes(self):
        with octave_anchors(mg_detection, self.params.task.model.octave_anchor_scales):
            return super()._build_anchor_boxes()

    def _build_model(self):
        # Not called here: a Keras `__call__` would make the SavedModel trace the
        # model's training branch too. Variables made later by `serve` are restored
        # from the checkpoint when they are created.
        return factory.build_maskrcnn(
            input_specs=tf_keras.layers.InputSpec(
                shape=[self._batch_size] + list(self._padded_size) + [3]),
            model_config=self.params.task.model,
            training_branches=False)


def export_saved_model(params: cfg.ExperimentConfig, checkpoint: str, export_dir: str,
                       batch_size: Optional[int] = 1,
                       input_type: str = "image_tensor",
                       standard_ops_only: bool = False) -> str:
    """Writes the SavedModel of `checkpoint` (file or directory); returns its path.

    With `standard_ops_only` the deformable ops are written as compositions of
    standard TensorFlow ops (`keras_dcn.ops.standard_ops_only`): the SavedModel then
    loads where keras_dcn is not installed, stock TF Serving included."""
    ops_scope = dcn_ops.standard_ops_only() if standard_ops_only else contextlib.nullcontext()
    with ops_scope:
        module = DcnDetectionModule(
            params=params, batch_size=batch_size,
            input_image_size=list(params.task.model.input_size[:2]),
            input_type=input_type, num_channels=3)
        export_saved_model_lib.export_inference_graph(
            input_type=input_type,
            batch_size=batch_size,
            input_image_size=list(params.task.model.input_size[:2]),
            params=params,
            checkpoint_path=runtime.latest_checkpoint(checkpoint),
            export_dir=export_dir,
            export_module=module,
            export_checkpoint_subdir="checkpoint",
            export_saved_model_subdir=SAVED_MODEL_SUBDIR)
    return os.path.join(export_dir, SAVED_MODEL_SUBDIR)

