"""The deformable Mask R-CNN model: Model Garden's `MaskRCNNModel` plus Keras
training steps and the optional R-CNN feature-mimicking branch.

`DcnMaskRCNNModel` takes Model Garden's components (`models.modeling.factory` builds
them) and adds:

* `train_step` / `test_step`, so `model.fit` / `model.evaluate` train on Model
  Garden's batches `(images [B, H, W, 3], labels)` (its Mask R-CNN parser with
  `is_training=True`) with the task's own losses (`loss_fn`, normally
  `DcnMaskRCNNTask.build_losses`: RPN score / box, Fast R-CNN class / box, mask,
  weight decay and, with mimicking, the two mimic losses). `test_step` samples
  proposals and targets as in training while every layer runs in inference mode
  (batch-norm moving statistics, no update), giving a validation loss; COCO AP
  comes from `models.evaluate`.
* with a `mimic_branch` (`models.modeling.rcnn_mimic`), the training forward pass
  (`training=True` with ground truth, which both `train_step` and Model Garden's
  `MaskRCNNTask.train_step` run) also runs the R-CNN branch and returns its outputs;
  inference, `test_step` and the exported serving graph never do.
"""

from typing import Any, Callable, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling import maskrcnn_model

from models.data import octave_anchors
from models.modeling import classifier_stats
from models.modeling import rcnn_mimic

PACKAGE = "keras_dcn_models"
LOSS_NAMES = ("total_loss", "rpn_score_loss", "rpn_box_loss", "frcnn_cls_loss",
              "frcnn_box_loss", "mask_loss", "model_loss")
MIMIC_LOSS_NAMES = (rcnn_mimic.MIMIC_LOSS, rcnn_mimic.CLASS_LOSS)
# Fast R-CNN pass values the mimic branch reads (training only, removed after use).
_SAMPLED_ROIS = "sampled_rois"
_SAMPLED_GT_BOXES = "sampled_gt_boxes"
_SAMPLED_FEATURES = "sampled_features"


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class DcnMaskRCNNModel(maskrcnn_model.MaskRCNNModel):
    """`MaskRCNNModel` with Keras training steps and R-CNN feature mimicking.

    Args:
      loss_fn: `loss_fn(outputs, labels, aux_losses) -> {name: scalar}` with at least
        the keys of `LOSS_NAMES` and `classifier_stats.NAMES` (and `MIMIC_LOSS_NAMES`
        with a mimic branch); needed by `train_step` / `test_step` only.
      mimic_branch: an `RCNNMimicBranch`; the detection head must then be a
        `FeatureDetectionHead` and there must be a single (non-cascade) head.
      octave_anchor_scales: the anchors the model makes itself (a call without
        `anchor_boxes`) have their scales an octave apart
        (`models.data.octave_anchors`), as the input pipeline's then do.
      **kwargs: the components and settings of `MaskRCNNModel`.
    """

    def __init__(self, *args, loss_fn: Optional[Callable[..., Dict[str, tf.Tensor]]] = None,
                 mimic_branch: Optional[rcnn_mimic.RCNNMimicBranch] = None,
                 octave_anchor_scales: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._octave_anchor_scales = bool(octave_anchor_scales)
        if mimic_branch is not None:
            if len(self.detection_head) != 1:
                raise ValueError("R-CNN feature mimicking needs a single detection head, got "
                                 f"a cascade of {len(self.detection_head)}")
            if not hasattr(self.detection_head[0], "embed"):
                raise ValueError("R-CNN feature mimicking needs a FeatureDetectionHead, got "
                                 f"{type(self.detection_head[0]).__name__}")
        self.mimic_branch = mimic_branch
        self._loss_fn = loss_fn
        names = (LOSS_NAMES + classifier_stats.NAMES
                 + (MIMIC_LOSS_NAMES if mimic_branch is not None else ()))
        self._loss_trackers = [tf_keras.metrics.Mean(name) for name in names]

    @property
    def metrics(self):
        """The means of the losses (and classifier statistics) that `fit` and
        `evaluate` report."""
        return list(self._loss_trackers)

    def call(self, images, *, image_shape, anchor_boxes=None, gt_boxes=None,
             gt_classes=None, gt_masks=None, gt_outer_boxes=None, training=None,
             sample_targets: bool = False):
        """`MaskRCNNModel.call` (inputs after `images` by keyword, as Keras `fit`
        requires). `sample_targets=True` (with `training` False) samples proposals and
        targets as in training while layers run in inference mode. In training with
        ground truth and a mimic branch, the outputs also hold the branch's values
        (`models.modeling.rcnn_mimic` keys)."""
        if anchor_boxes is None and self._octave_anchor_scales:
            anchor_boxes = self._octave_anchor_boxes(images)
        run_mimic = (self.mimic_branch is not None and bool(training) and not sample_targets
                     and gt_boxes is not None)
        if sample_targets:
            # Sub-layers take `training` from the enclosing call (False); the R-CNN logic
            # itself takes the training path (proposal sampling, targets, mask sampling).
            training = True
        self._keep_sampled = run_mimic
        try:
            outputs = super().call(images, image_shape, anchor_boxes=anchor_boxes,
                                   gt_boxes=gt_boxes, gt_classes=gt_classes, gt_masks=gt_masks,
                                   gt_outer_boxes=gt_outer_boxes, training=training)
        finally:
            self._keep_sampled = False
        if run_mimic:
            outputs.update(self._mimic_outputs(images, outputs))
        return outputs

    def _octave_anchor_boxes(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """`{level: [B, H_l, W_l, A * 4]}` octave-spaced anchors for `images`' size."""
        config = self._config_dict
        per_image = octave_anchors.OctaveAnchorGenerator(
            config["min_level"], config["max_level"], config["num_scales"],
            config["aspect_ratios"], config["anchor_size"])(images.shape[1:3])
        batch_size = tf.shape(images)[0]
        return {level: tf.tile(boxes[None], [batch_size, 1, 1, 1])
                for level, boxes in per_image.items()}

    def _run_frcnn_head(self, **kwargs):
        """Model Garden's Fast R-CNN step; for the mimic branch it also keeps the sampled
        RoIs, their matched ground-truth boxes and their fc features."""
        result = super()._run_frcnn_head(**kwargs)
        if getattr(self, "_keep_sampled", False):
            outputs, matched_gt_boxes, rois = result[2], result[3], result[-1]
            if isinstance(matched_gt_boxes, tuple):  # (boxes, outer boxes)
                matched_gt_boxes = matched_gt_boxes[0]
            head = self.detection_head[kwargs["cascade_num"]]
            outputs.update({_SAMPLED_ROIS: rois, _SAMPLED_GT_BOXES: matched_gt_boxes,
                            _SAMPLED_FEATURES: head.last_features})
        return result

    def _mimic_outputs(self, images: tf.Tensor, outputs: Dict[str, Any]
                       ) -> Dict[str, tf.Tensor]:
        """Runs the R-CNN branch on Omega (see `models.modeling.rcnn_mimic`)."""
        branch = self.mimic_branch
        head = self.detection_head[0]
        rois = outputs.pop(_SAMPLED_ROIS)
        gt_boxes = outputs.pop(_SAMPLED_GT_BOXES)
        frcnn_features = outputs.pop(_SAMPLED_FEATURES)
        class_targets = outputs["class_targets"]

        eligible = branch.eligible(rois, gt_boxes, class_targets)
        indices, weights = branch.sample(tf.stop_gradient(eligible))
        boxes = tf.stop_gradient(tf.gather(rois, indices, batch_dims=1))
        # Only the slots that hold a RoI are cropped and run (none at all when no
        # slot does); the others' features are zeros (their losses have weight 0).
        crops, slots = branch.crops(images, boxes, weights)
        shape = tf.concat([tf.shape(indices, out_type=tf.int64),
                           [frcnn_features.shape[-1]]], 0)

        def crop_pass():
            # Batch normalisation in inference mode: the crops are normalised with
            # the statistics the Fast R-CNN pass uses at test time, and batches of
            # crops never enter those statistics.
            crop_features = self.backbone(crops, training=False)
            if self.decoder:
                crop_features = self.decoder(crop_features, training=False)
            pooled = self.roi_aligner(crop_features,
                                      branch.whole_crop_boxes(tf.shape(crops)[0]))
            embedded = head.embed(pooled, training=False)
            return tf.scatter_nd(slots, tf.reshape(embedded, [-1, shape[-1]]), shape)

        rcnn_features = tf.cond(tf.shape(slots)[0] > 0, crop_pass,
                                lambda: tf.zeros(shape, frcnn_features.dtype))
        return {
            rcnn_mimic.RCNN_FEATURES: rcnn_features,
            rcnn_mimic.FRCNN_FEATURES: tf.gather(frcnn_features, indices, batch_dims=1),
            rcnn_mimic.CLASS_OUTPUTS: branch(rcnn_features),
            rcnn_mimic.CLASS_TARGETS: tf.gather(class_targets, indices, batch_dims=1),
            rcnn_mimic.WEIGHTS: weights,
        }

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
        if self._loss_fn is None:
            raise ValueError("DcnMaskRCNNModel needs a loss_fn to train or evaluate with "
                             "Keras (DcnMaskRCNNTask.build_model passes the task's losses)")
        outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
        return self._loss_fn(outputs, labels, aux_losses=self.losses)

    def _record(self, losses) -> Dict[str, tf.Tensor]:
        for tracker in self._loss_trackers:
            tracker.update_state(losses[tracker.name])
        return {tracker.name: tracker.result() for tracker in self._loss_trackers}

    def train_step(self, data):
        """One optimizer step on a batch `(images, labels)`; returns the loss means."""
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
        """Losses of a batch with training-time targets and inference-mode layers."""
        images, labels = data
        outputs = self(images, **self._target_inputs(labels), training=False,
                       sample_targets=True)
        return self._record(self._compute_losses(outputs, labels))
