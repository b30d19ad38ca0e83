"""Model Garden task of the deformable Mask R-CNN.

`DcnMaskRCNNTask` is Model Garden's `MaskRCNNTask` (inputs, losses, COCO metrics,
train / validation steps) registered for `DcnMaskRCNNTask` configs; it builds its
model with `models.modeling.factory` (a `DcnMaskRCNNModel`, trainable with Model
Garden's trainer and with Keras `fit`), adds the weighted R-CNN feature-mimicking
losses when the model returns the branch's outputs, and loads initial checkpoints
that lack the deformable branches (a regular ResNet / Mask R-CNN checkpoint).

Before reading TFRecords it checks that they read to their end
(`models.data.record_files`), and it evaluates against the valid part of
`annotation_file` (`models.data.coco_checks`), so bad data fails before training
starts or is left out, never crashing a run midway.
"""

import tempfile

from absl import logging
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.dataloaders import maskrcnn_input
from official.vision.evaluation import coco_evaluator
from official.vision.tasks import maskrcnn as maskrcnn_task

from keras_dcn import tf_keras as dcn_layers
from models.configs import maskrcnn as dcn_config
from models.data import coco_checks
from models.data import record_files
from models.data.octave_anchors import octave_anchors
from models.data.short_side_resize import short_side_resize
from models.modeling import classifier_stats
from models.modeling import factory
from models.modeling import maskrcnn_model
from models.modeling import rcnn_mimic


def deformable_branch_variables(model: tf.Module) -> list:
    """Variables that only deformable layers have: conv offset / mask branches and
    the whole sibling branch of deformable RoI pooling."""
    found = []
    for module in model.submodules:
        if isinstance(module, dcn_layers.DeformConv2D):
            found += [module.offset_kernel, module.offset_bias]
        elif isinstance(module, dcn_layers.DeformRoIPool):
            found += list(module.weights)
    return found


@task_factory.register_task_cls(dcn_config.DcnMaskRCNNTask)
class DcnMaskRCNNTask(maskrcnn_task.MaskRCNNTask):
    """Mask R-CNN task whose model follows `task.model.variant`."""

    def build_model(self) -> maskrcnn_model.DcnMaskRCNNModel:
        """Builds (and creates the variables of) the model of the task config, with
        the task's losses as its `loss_fn` (for `fit`)."""
        model_config = self.task_config.model
        input_size = list(model_config.input_size)
        decay = self.task_config.losses.l2_weight_decay
        # Model Garden halves the decay: tf_keras' l2(w) adds w * sum(x^2), while the
        # decay is defined on tf.nn.l2_loss = sum(x^2) / 2.
        l2_regularizer = tf_keras.regularizers.l2(decay / 2.0) if decay else None
        model = factory.build_maskrcnn(
            input_specs=tf_keras.layers.InputSpec(shape=[None] + input_size),
            model_config=model_config,
            l2_regularizer=l2_regularizer,
            loss_fn=self.build_losses)
        if self.task_config.freeze_backbone:
            model.backbone.trainable = False
        # A symbolic call creates every variable of the inference path.
        model(tf_keras.Input(input_size), image_shape=tf_keras.Input([2]), training=False)
        if model.mimic_branch is not None:
            model.mimic_branch.build([None, None, model_config.detection_head.fc_dims])
        return model

    def build_inputs(self, params, input_context=None, dataset_fn=None):
        """Model Garden's input pipeline of `params` (a data config), resizing as
        `task.model.short_side` says, once its TFRecord files are known to read to
        their end: a damaged file raises `record_files.DamagedRecordsError`, or, with
        `task.drop_damaged_records`, is read up to its damage."""
        if dataset_fn is None and params.file_type == "tfrecord" \
                and isinstance(params.input_path, (str, list, tuple)) and params.input_path:
            scans = record_files.check(params.input_path,
                                       self.task_config.drop_damaged_records)
            if any(scan.damage for scan in scans):
                dataset_fn = record_files.read_undamaged
        model = self.task_config.model
        with short_side_resize(maskrcnn_input, model.short_side, model.long_side,
                               model.input_size), \
                octave_anchors(maskrcnn_input, model.octave_anchor_scales):
            return super().build_inputs(params, input_context, dataset_fn)

    def _build_coco_metrics(self):
        """Model Garden's COCO evaluator; with an `annotation_file`, against its valid
        part (`coco_checks.valid_annotation_file`, written to the logging folder when
        entries are left out), as the records were converted."""
        path = self.task_config.annotation_file
        if not path:
            super()._build_coco_metrics()
            return
        out_dir = self.logging_dir or tempfile.mkdtemp(prefix="annotations")
        self.coco_metric = coco_evaluator.COCOEvaluator(
            annotation_file=coco_checks.valid_annotation_file(
                path, self.task_config.model.include_mask, out_dir),
            include_mask=self.task_config.model.include_mask,
            per_category_metrics=self.task_config.per_category_metrics)

    def build_losses(self, outputs, labels, aux_losses=None):
        """Model Garden's Mask R-CNN losses and the Fast R-CNN classifier's statistics
        on its sampled RoIs (`classifier_stats.NAMES`, logged, not optimised), plus,
        when `outputs` holds the R-CNN branch's values, `mimic_loss` and
        `rcnn_cls_loss` (unweighted) with their weighted sum added to `model_loss` and
        `total_loss`."""
        losses = super().build_losses(outputs, labels, aux_losses)
        losses.update(classifier_stats.classifier_statistics(outputs["class_outputs"],
                                                             outputs["class_targets"]))
        if rcnn_mimic.WEIGHTS not in outputs:
            return losses
        settings = self.task_config.model.mimic
        extra = rcnn_mimic.mimic_losses(outputs, settings.reduction)
        weighted = (settings.mimic_weight * extra[rcnn_mimic.MIMIC_LOSS]
                    + settings.classification_weight * extra[rcnn_mimic.CLASS_LOSS])
        losses.update(extra)
        losses["model_loss"] += weighted
        losses["total_loss"] += self.task_config.losses.loss_weight * weighted
        return losses

    def build_metrics(self, training: bool = True):
        """Model Garden's metrics; in training also the means of the classifier's
        statistics and, with mimicking, of the two mimic losses (logged to TensorBoard
        by Model Garden's trainer)."""
        metrics = super().build_metrics(training)
        if training:
            metrics += [tf_keras.metrics.Mean(name, dtype=tf.float32)
                        for name in classifier_stats.NAMES]
        if training and self.task_config.model.mimic.enabled:
            metrics += [tf_keras.metrics.Mean(name, dtype=tf.float32)
                        for name in maskrcnn_model.MIMIC_LOSS_NAMES]
        return metrics

    def initialize(self, model: tf_keras.Model):
        """Loads `init_checkpoint` (modules as in Model Garden).

        Every variable of the restored modules must be found in the checkpoint, except
        the deformable branches (`deformable_branch_variables`) and the R-CNN mimic
        classifier, which keep their initial values: a regular ResNet / Mask R-CNN
        checkpoint initialises the deformable model.
        """
        given = path = self.task_config.init_checkpoint
        if not path:
            return
        if tf.io.gfile.isdir(path):
            path = tf.train.latest_checkpoint(path)
        if not path or not tf.io.gfile.glob(path + ".index"):
            raise FileNotFoundError(
                f"task.init_checkpoint {given!r} holds no checkpoint: give the ImageNet "
                "backbone checkpoint the experiment starts from, or '' to train from "
                "scratch")
        modules = self.task_config.init_checkpoint_modules
        if modules == "all":
            items = {"model": model}
        else:
            items = {name: getattr(model, name) for name in ("backbone", "decoder")
                     if name in modules}
        root = tf.train.Checkpoint(**items)
        root.read(path).expect_partial()
        restored = {id(obj) for obj in tf.train.CheckpointView(path).match(root).values()}
        optional = {id(v) for v in deformable_branch_variables(model)}
        mimic_branch = getattr(model, "mimic_branch", None)
        if mimic_branch is not None:
            optional |= {id(v) for v in mimic_branch.weights}
        missing = [v.name for item in items.values() for v in item.variables
                   if id(v) not in restored and id(v) not in optional]
        if missing:
            raise AssertionError(
                f"{len(missing)} variables of {sorted(items)} are not in {path}: "
                f"{missing[:10]}")
        logging.info("Loaded %s from %s (new branches kept at their initial values)",
                     sorted(items), path)
