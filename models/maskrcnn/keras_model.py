"""Mask R-CNN trainable with Keras `model.fit` / `model.evaluate`.

`MaskRCNNKerasModel` is Model Garden's `MaskRCNNModel` with `train_step` and
`test_step`. Both take Model Garden's training batches `(images [B, H, W, 3],
labels)` (its Mask R-CNN parser with `is_training=True`) and compute the task's own
losses (`loss_fn`, normally `MaskRCNNTask.build_losses`: RPN score / box, Fast R-CNN
class / box and mask losses, plus weight decay). `test_step` samples proposals and
targets as in training but runs every layer in inference mode (batch-norm moving
statistics, nothing updated), giving a validation loss. Detection metrics (COCO AP)
come from `models.evaluate`, which runs the model in inference mode.
"""

from typing import Any, Callable, Dict, Mapping

import tensorflow as tf
import tf_keras

from official.vision.modeling import maskrcnn_model

PACKAGE = "keras_dcn_models"
LOSS_NAMES = ("total_loss", "rpn_score_loss", "rpn_box_loss", "frcnn_cls_loss",
              "frcnn_box_loss", "mask_loss", "model_loss")


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class MaskRCNNKerasModel(maskrcnn_model.MaskRCNNModel):
  """`MaskRCNNModel` with Keras training / evaluation steps.

  Args:
    loss_fn: `loss_fn(outputs, labels, aux_losses) -> {name: scalar}` with at least
      the keys of `LOSS_NAMES` (`MaskRCNNTask.build_losses`).
    **kwargs: the components and settings of `MaskRCNNModel`.
  """

  def __init__(self, *args, loss_fn: Callable[..., Dict[str, tf.Tensor]], **kwargs):
    super().__init__(*args, **kwargs)
    self._loss_fn = loss_fn
    self._loss_trackers = [tf_keras.metrics.Mean(name) for name in LOSS_NAMES]

  @property
  def metrics(self):
    return list(self._loss_trackers)

  def call(self, images, *, image_shape, anchor_boxes=None, gt_boxes=None,
           gt_classes=None, gt_masks=None, gt_outer_boxes=None, training=None,
           sample_targets: bool = False):
    """`MaskRCNNModel.call` (inputs after `images` by keyword, as Keras `fit`
    requires); `sample_targets=True` (with `training` False) samples proposals and
    targets as in training while layers run in inference mode."""
    if sample_targets:
      # Sub-layers take `training` from the enclosing call (False); the R-CNN logic
      # itself takes the training path (proposal sampling, targets, mask sampling).
      training = True
    return super().call(images, image_shape, anchor_boxes=anchor_boxes,
                        gt_boxes=gt_boxes, gt_classes=gt_classes, gt_masks=gt_masks,
                        gt_outer_boxes=gt_outer_boxes, training=training)

  def _target_inputs(self, labels: Mapping[str, Any]) -> Dict[str, Any]:
    inputs = {
        "image_shape": labels["image_info"][:, 1, :],
        "anchor_boxes": labels["anchor_boxes"],
        "gt_boxes": labels["gt_boxes"],
        "gt_classes": labels["gt_classes"],
    }
    if self._include_mask:
      inputs["gt_masks"] = labels["gt_masks"]
    if self.outer_boxes_scale > 1.0:
      inputs["gt_outer_boxes"] = labels["gt_outer_boxes"]
    return inputs

  def _compute_losses(self, outputs, labels) -> Dict[str, tf.Tensor]:
    outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
    return self._loss_fn(outputs, labels, aux_losses=self.losses)

  def _record(self, losses) -> Dict[str, tf.Tensor]:
    for tracker in self._loss_trackers:
      tracker.update_state(losses[tracker.name])
    return {tracker.name: tracker.result() for tracker in self._loss_trackers}

  def train_step(self, data):
    images, labels = data
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    optimizer = self.optimizer
    scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    with tf.GradientTape() as tape:
      outputs = self(images, **self._target_inputs(labels), training=True)
      losses = self._compute_losses(outputs, labels)
      # Gradients are summed over replicas.
      loss = losses["total_loss"] / replicas
      if scaled:
        loss = optimizer.get_scaled_loss(loss)
    variables = self.trainable_variables
    grads = tape.gradient(loss, variables)
    if scaled:
      grads = optimizer.get_unscaled_gradients(grads)
    optimizer.apply_gradients(zip(grads, variables))
    return self._record(losses)

  def test_step(self, data):
    images, labels = data
    outputs = self(images, **self._target_inputs(labels), training=False,
                   sample_targets=True)
    return self._record(self._compute_losses(outputs, labels))
