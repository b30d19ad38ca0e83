"""Multilevel (modulated) deformable RoI pooling for Model Garden's R-CNN heads.

`MultilevelDeformableROIAligner` is called like Model Garden's
`MultilevelROIAligner`: `aligner(features, boxes)` with `features` a dict
`{level: [B, H_l, W_l, C]}` (FPN levels as strings) and `boxes` `[B, K, 4]` rows
`(y1, x1, y2, x2)` in image pixels; it returns `[B, K, crop, crop, C]`.

Each box goes to one level by Model Garden's FPN rule
(`official.vision.ops.spatial_transform_ops.multilevel_crop_and_resize`):
`level = floor(log2(sqrt(h * w) / 224)) + 4`, clipped to the levels present; a box
of zero area goes to the lowest level. Its corners are divided by `2 ** level` and the
box is pooled from that level by one shared `keras_dcn.tf_keras.DeformRoIPool` (the
paper's sibling branch: RoIAlign -> two fc layers -> zero-initialised fc giving the
per-bin offsets and, for DCNv2, the mask), so every level uses the same branch weights.
Each box's RoIAlign comes from its own level, but the branch's fc layers run once on
the boxes of all levels together.
With `deformable=False` the boxes are pooled by `keras_dcn.ops.deform_roi_pool`
without offsets or mask: plain RoIAlign with the same sampling as the deformable
layer, and no weights, so a regular model differs from a deformable one only in what
deforms.

With `feature_level` set, every box is pooled from that one level instead, its
corners divided by `feature_stride` (the paper's Faster R-CNN pools all its RoIs from
conv5 at stride 16; `models.modeling.decoders.c4_c5`).

Sampling conventions. Model Garden's `MultilevelROIAligner` (`sample_offset=0.5`)
reads one bilinear sample at the centre of each bin of the box taken as is. This layer
uses `deform_roi_pool`'s conventions: `sampling_ratio` x `sampling_ratio` samples per
bin, and with `aligned=True` the box is moved by -0.5 feature pixel (torchvision /
mmcv / Detectron2). With `sampling_ratio=1, aligned=False` and zero offsets (at
initialisation, unmodulated) it reproduces `MultilevelROIAligner` for every box at
least one feature pixel high and wide on its level (smaller boxes are widened to one
pixel by the op); with modulation at initialisation the result is half of that.
"""

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras

import keras_dcn
from keras_dcn import tf_keras as dcn_layers

PACKAGE = "keras_dcn_models"
# Model Garden's canonical FPN assignment: a 224x224 box goes to level 4.
CANONICAL_SIZE = 224.0
CANONICAL_LEVEL = 4


def assign_levels(boxes: tf.Tensor, min_level: int, max_level: int) -> tf.Tensor:
    """FPN level of each box, as Model Garden assigns it.

    Args:
      boxes: `[..., 4]` rows `(y1, x1, y2, x2)` in image pixels.
      min_level, max_level: the levels available.

    Returns:
      int32 `[...]`: `floor(log2(sqrt(area) / 224)) + 4` clipped to
      `[min_level, max_level]`; `min_level` for boxes of zero (or negative) area.
    """
    boxes = tf.cast(boxes, tf.float32)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    side = tf.sqrt(height * width)
    # log(x) / log(2) floored, the same float ops as Model Garden, so boxes whose size
    # sits exactly on a level boundary fall on the same side.
    ratio = tf.math.divide_no_nan(side, CANONICAL_SIZE)
    safe = tf.where(ratio > 0, ratio, tf.ones_like(ratio))
    level = tf.math.floordiv(tf.math.log(safe), tf.math.log(2.0)) + CANONICAL_LEVEL
    level = tf.where(ratio > 0, level, tf.cast(min_level, tf.float32))
    level = tf.clip_by_value(level, float(min_level), float(max_level))
    return tf.cast(level, tf.int32)


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class MultilevelDeformableROIAligner(tf_keras.layers.Layer):
    """(Modulated) deformable RoI pooling on an FPN; drop-in for `MultilevelROIAligner`.

    Args:
      crop_size: bins per side of the output (7 for boxes, 14 for masks).
      deformable: pool with the learned offsets (and mask) of the sibling branch;
        False pools plain RoIAlign with the same sampling and has no weights.
      sample_offset: accepted for config compatibility with Model Garden's aligner;
        sampling is set by `sampling_ratio` and `aligned` instead.
      modulated: DCNv2 modulation (a sigmoid mask per bin) or DCNv1 offsets only.
      sampling_ratio: samples per bin along each axis (2 in the paper).
      aligned: move boxes by -0.5 feature pixel before sampling.
      gamma: scale of the predicted normalised offsets (0.1 in DCNv1 and the
        authors' code; DCNv2's text gives no value).
      hidden_units: width of the branch's two fc layers (1024 in the paper).
      offset_lr_multiplier: learning-rate factor of the branch (1 in the paper).
      kernel_regularizer: regularizer of the branch's fc kernels.
      feature_level: 0 pools each box from its FPN level; a level pools every box
        from `features[str(feature_level)]`.
      feature_stride: stride of that level in image pixels (needed with
        `feature_level`).
    """

    def __init__(self, crop_size: int = 7, sample_offset: float = 0.5,
                 deformable: bool = True, modulated: bool = True, sampling_ratio: int = 2, aligned: bool = True,
                 gamma: float = 0.1, hidden_units: int = 1024,
                 offset_lr_multiplier: float = 1.0,
                 kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
                 feature_level: int = 0, feature_stride: int = 0, **kwargs):
        super().__init__(**kwargs)
        if feature_level and feature_stride <= 0:
            raise ValueError("feature_stride must be positive with feature_level "
                             f"{feature_level}, got {feature_stride}")
        self._config_dict = {
            "crop_size": int(crop_size),
            "sample_offset": float(sample_offset),
            "deformable": bool(deformable),
            "modulated": bool(modulated),
            "sampling_ratio": int(sampling_ratio),
            "aligned": bool(aligned),
            "gamma": float(gamma),
            "hidden_units": int(hidden_units),
            "offset_lr_multiplier": float(offset_lr_multiplier),
            "kernel_regularizer": kernel_regularizer,
            "feature_level": int(feature_level),
            "feature_stride": int(feature_stride),
        }
        # spatial_scale 1: boxes arrive already scaled to their level.
        self.pool = dcn_layers.DeformRoIPool(
            output_size=crop_size, spatial_scale=1.0, sampling_ratio=sampling_ratio,
            gamma=gamma, aligned=aligned, modulated=modulated, hidden_units=hidden_units,
            offset_lr_multiplier=offset_lr_multiplier,
            kernel_regularizer=kernel_regularizer,
            name="deform_roi_pool") if deformable else None

    def build(self, input_shape):
        """Builds the branch for the channels of the pooled features: those of
        `feature_level`, or of the lowest level (FPN levels share their channels)."""
        if self.pool is not None and not self.pool.built:
            level = self._config_dict["feature_level"] or min(int(k) for k in input_shape)
            shape = input_shape.get(str(level))
            if shape is not None:
                channels = tf.TensorShape(shape)[-1]
                with tf.name_scope(self.pool.name):
                    self.pool.build(tf.TensorShape([None, None, None, channels]))
        super().build(input_shape)

    def _plain_pool(self, features: tf.Tensor, rois: tf.Tensor) -> tf.Tensor:
        """RoIAlign `[R, crop, crop, C]` of `rois` `[R, 5]` on one level's `features`."""
        config = self._config_dict
        return keras_dcn.ops.deform_roi_pool(
            features, rois, output_size=config["crop_size"], spatial_scale=1.0,
            sampling_ratio=config["sampling_ratio"], aligned=config["aligned"])

    def _pool_levels(self, level_features: list, level_rois: list, slot: tf.Tensor,
                     positions: list) -> list:
        """`[R_l, crop, crop, C]` for each level's RoIs `[R_l, 5]` on its features.

        The deformable branch runs once on the RoIAlign features of all RoIs: one set
        of matrix products and one weight gradient, not one per level. `slot` `[R]`
        names each RoI's level and `positions` each level's RoIs, as
        `tf.dynamic_partition` splits them."""
        plain = [self._plain_pool(f, r) for f, r in zip(level_features, level_rois)]
        if self.pool is None:
            return plain
        count = len(level_features)
        with tf.name_scope("sibling_branch"):
            offsets, mask = self.pool.offsets_and_mask_of_pooled(
                tf.dynamic_stitch(positions, plain))
        level_offsets = tf.dynamic_partition(offsets, slot, count)
        level_mask = tf.dynamic_partition(mask, slot, count) if mask is not None \
            else [None] * count
        return [self.pool.pool_deformed(f, r, o, m) for f, r, o, m in
                zip(level_features, level_rois, level_offsets, level_mask)]

    def call(self, features: Mapping[str, tf.Tensor], boxes: tf.Tensor,
             training: Optional[bool] = None) -> tf.Tensor:
        """Pools `[B, K, crop, crop, C]` for `boxes` `[B, K, 4]` (y1, x1, y2, x2)."""
        crop = self._config_dict["crop_size"]
        boxes = tf.cast(boxes, tf.float32)
        batch_size, num_boxes = tf.shape(boxes)[0], tf.shape(boxes)[1]
        flat = tf.reshape(boxes, [-1, 4])
        batch_index = tf.repeat(tf.range(batch_size), num_boxes)

        def rois_at(scale):
            # deform_roi_pool's rows: (batch_index, x1, y1, x2, y2).
            return tf.concat([tf.cast(batch_index, tf.float32)[:, None],
                              tf.gather(flat / scale, [1, 0, 3, 2], axis=1)], axis=1)

        feature_level = self._config_dict["feature_level"]
        if feature_level:
            if str(feature_level) not in features:
                raise ValueError(f"feature_level {feature_level} is not among the "
                                 f"feature levels {sorted(features)}")
            level_features = features[str(feature_level)]
            channels = level_features.shape[-1]
            rois = rois_at(float(self._config_dict["feature_stride"]))
            merged = self.pool(level_features, rois) if self.pool is not None \
                else self._plain_pool(level_features, rois)
        else:
            levels = sorted(int(level) for level in features)
            min_level, max_level = levels[0], levels[-1]
            if levels != list(range(min_level, max_level + 1)):
                raise ValueError(f"feature levels must be consecutive, got {levels}")
            channels = features[str(min_level)].shape[-1]
            level = assign_levels(flat, min_level, max_level)
            rois = rois_at(tf.pow(2.0, tf.cast(level, tf.float32))[:, None])
            slot = level - min_level
            count = len(levels)
            positions = tf.dynamic_partition(tf.range(tf.shape(rois)[0]), slot, count)
            pooled = self._pool_levels([features[str(lvl)] for lvl in levels],
                                       tf.dynamic_partition(rois, slot, count), slot,
                                       positions)
            merged = tf.dynamic_stitch(positions, pooled)
        merged = tf.reshape(merged, [batch_size, num_boxes, crop, crop, channels])
        merged.set_shape(boxes.shape[:2].concatenate([crop, crop, channels]))
        return merged

    def get_config(self):
        """The layer's constructor arguments."""
        config = dict(self._config_dict)
        config["kernel_regularizer"] = tf_keras.regularizers.serialize(
            config["kernel_regularizer"]) if config["kernel_regularizer"] else None
        return {**super().get_config(), **config}
