"""R-CNN feature mimicking (Section 3.3 of the paper), a training-only branch.

Per image, up to `rois_per_image` of the RPN proposals that Model Garden's RoI
sampler drew for the Fast R-CNN head are sampled into Omega, as the paper samples
region proposals: by default the positives, whose IoU with their matched ground-truth
box is at least `iou_threshold`. The ground-truth boxes the sampler mixes in never
are (a sampled RoI equal to its matched ground-truth box is one of them). Each is
cropped from the input image and resized to `crop_size` x `crop_size`; the shared
backbone and FPN run on the crops; the shared RoI aligner pools a RoI covering the
whole crop (Model Garden's level assignment puts a 224x224 box on level 4, stride 16:
the paper's 14x14 map); the shared fc layers of the Fast R-CNN head give f_RCNN(b).
Batch normalisation runs in inference mode in this crop pass (moving statistics,
never updated by crops). The same RoI's fc features from the Fast R-CNN pass are
f_FRCNN(b). Two losses follow:

* L_mimic = sum over Omega of [1 - cos(f_RCNN(b), f_FRCNN(b))] (Eq. 3), averaged
  over the images of the batch (or, with `reduction='mean'`, over Omega);
* the cross-entropy of a separate (C+1)-way classifier on f_RCNN(b), whose targets
  are the RoIs' Fast R-CNN class targets (0 for background).

`RCNNMimicBranch` holds the settings and the classifier and does the sampling and
cropping; `models.modeling.maskrcnn_model.DcnMaskRCNNModel` runs the branch in its training
forward pass and `mimic_losses` turns the branch's outputs into the two losses.
Boxes are `(y1, x1, y2, x2)` in the pixels of the (padded) input image.
"""

from typing import Dict, Optional, Tuple

import tensorflow as tf
import tf_keras

PACKAGE = "keras_dcn_models"
# Keys of the model outputs the branch adds in training.
RCNN_FEATURES = "mimic_rcnn_features"
FRCNN_FEATURES = "mimic_frcnn_features"
CLASS_OUTPUTS = "mimic_class_outputs"
CLASS_TARGETS = "mimic_class_targets"
WEIGHTS = "mimic_weights"
MIMIC_LOSS = "mimic_loss"
CLASS_LOSS = "rcnn_cls_loss"


def box_iou(boxes: tf.Tensor, others: tf.Tensor) -> tf.Tensor:
    """Element-wise IoU of `[..., 4]` boxes with `[..., 4]` boxes (0 for empty unions)."""
    y1 = tf.maximum(boxes[..., 0], others[..., 0])
    x1 = tf.maximum(boxes[..., 1], others[..., 1])
    y2 = tf.minimum(boxes[..., 2], others[..., 2])
    x2 = tf.minimum(boxes[..., 3], others[..., 3])
    inter = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    def area(b):
        return tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)
    return tf.math.divide_no_nan(inter, area(boxes) + area(others) - inter)


def crop_and_resize(images: tf.Tensor, boxes: tf.Tensor, size: int,
                    box_indices: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Crops `boxes` `[B, M, 4]` (image pixels, `y1, x1, y2, x2`) from `images`
    `[B, H, W, C]` and resizes each to `[size, size]` by bilinear sampling at the
    centres of a `size` x `size` grid over the box (pixel `i` covers `[i, i + 1)`).
    Returns `[B * M, size, size, C]`, image-major, in the dtype of `images` (sampled
    in float32: `tf.image.crop_and_resize` takes no bfloat16). With `box_indices`
    `[V]` (int32), `boxes` is `[V, 4]` and box `v` is cropped from image
    `box_indices[v]`."""
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
    box_h = boxes[:, 2] - boxes[:, 0]
    box_w = boxes[:, 3] - boxes[:, 1]
    # First and last sample centres, in pixel-index coordinates (centre of pixel i is i).
    first_y = boxes[:, 0] + 0.5 * box_h / size - 0.5
    last_y = boxes[:, 2] - 0.5 * box_h / size - 0.5
    first_x = boxes[:, 1] + 0.5 * box_w / size - 0.5
    last_x = boxes[:, 3] - 0.5 * box_w / size - 0.5
    # tf.image.crop_and_resize maps normalised y to y * (H - 1).
    normalised = tf.stack([first_y / tf.maximum(height - 1, 1.0),
                           first_x / tf.maximum(width - 1, 1.0),
                           last_y / tf.maximum(height - 1, 1.0),
                           last_x / tf.maximum(width - 1, 1.0)], axis=1)
    if box_indices is None:
        per_image = tf.shape(boxes)[0] // tf.shape(images)[0]
        box_indices = tf.repeat(tf.range(tf.shape(images)[0]), per_image)
    crops = tf.image.crop_and_resize(tf.cast(images, tf.float32), normalised, box_indices,
                                     [size, size])
    return tf.cast(crops, images.dtype)


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class RCNNMimicBranch(tf_keras.layers.Layer):
    """Sampling, cropping and the unshared classifier of the R-CNN branch.

    Args:
      num_classes: classes of the classifier, background included (C + 1).
      rois_per_image: size of Omega per image (32).
      roi_type: `positive`, `negative` or `all` (see `eligible`).
      iou_threshold: IoU with the matched ground-truth box that makes a RoI positive.
      crop_size: side of the resized crops (224).
      kernel_regularizer: regularizer of the classifier's kernel.
    """

    def __init__(self, num_classes: int, rois_per_image: int = 32,
                 roi_type: str = "positive", iou_threshold: float = 0.5,
                 crop_size: int = 224,
                 kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if roi_type not in ("positive", "negative", "all"):
            raise ValueError(f"roi_type must be 'positive', 'negative' or 'all', got {roi_type!r}")
        self.num_classes = int(num_classes)
        self.rois_per_image = int(rois_per_image)
        self.roi_type = roi_type
        self.iou_threshold = float(iou_threshold)
        self.crop_size = int(crop_size)
        self.kernel_regularizer = kernel_regularizer
        self.classifier = tf_keras.layers.Dense(
            self.num_classes,
            kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
            kernel_regularizer=kernel_regularizer,
            name="rcnn-scores")

    def eligible(self, rois: tf.Tensor, matched_gt_boxes: tf.Tensor,
                 class_targets: tf.Tensor) -> tf.Tensor:
        """bool `[B, K]`: the RoIs that may enter Omega.

        `positive`: foreground class target and IoU with the matched ground-truth box
        >= `iou_threshold`; `negative`: background target (class 0); `all`: both. RoIs
        of zero area (the sampler's padding) and ground-truth boxes the sampler mixed
        in (equal to their matched box) never are.
        """
        rois = tf.cast(rois, tf.float32)
        matched_gt_boxes = tf.cast(matched_gt_boxes, tf.float32)
        non_empty = (rois[..., 2] > rois[..., 0]) & (rois[..., 3] > rois[..., 1])
        proposal = tf.logical_not(tf.reduce_all(tf.equal(rois, matched_gt_boxes), axis=-1))
        iou = box_iou(rois, matched_gt_boxes)
        positive = (class_targets > 0) & (iou >= self.iou_threshold)
        negative = tf.equal(class_targets, 0)
        chosen = {"positive": positive, "negative": negative,
                  "all": positive | negative}[self.roi_type]
        return chosen & non_empty & proposal

    def sample(self, eligible: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Draws Omega: `rois_per_image` slots per image, eligible RoIs in random order
        first. Returns int32 indices `[B, M]` into the K RoIs and float `[B, M]` weights
        (1 for a sampled RoI, 0 for an empty slot)."""
        num_rois = tf.shape(eligible)[1]
        slots = tf.minimum(self.rois_per_image, num_rois)
        noise = tf.random.uniform(tf.shape(eligible))
        score = tf.where(eligible, noise, noise - 2.0)  # eligible ones rank first
        _, indices = tf.math.top_k(score, k=slots)
        weights = tf.cast(tf.gather(eligible, indices, batch_dims=1), tf.float32)
        # A fixed number of slots keeps shapes static; pad up to rois_per_image.
        pad = [[0, 0], [0, self.rois_per_image - slots]]
        return tf.pad(indices, pad), tf.pad(weights, pad)

    def crops(self, images: tf.Tensor, boxes: tf.Tensor, weights: tf.Tensor
              ) -> Tuple[tf.Tensor, tf.Tensor]:
        """The crops of the sampled RoIs only: `[V, crop, crop, 3]` crops of the boxes
        `[B, M, 4]` whose slot has a weight, and the slots `[V, 2]` (image, slot)
        they fill; empty slots make no crop, so the crop pass never runs them."""
        slots = tf.where(weights > 0)
        return crop_and_resize(images, tf.gather_nd(boxes, slots), self.crop_size,
                               box_indices=tf.cast(slots[:, 0], tf.int32)), slots

    def whole_crop_boxes(self, count) -> tf.Tensor:
        """`[count, 1, 4]` boxes covering a whole crop, the RoIs of the R-CNN pooling."""
        box = tf.constant([0.0, 0.0, self.crop_size, self.crop_size], tf.float32)
        return tf.tile(box[None, None], [count, 1, 1])

    def build(self, input_shape):
        """Makes the classifier for R-CNN features `[B, M, D]`."""
        self.classifier.build(input_shape)
        super().build(input_shape)

    def call(self, rcnn_features: tf.Tensor) -> tf.Tensor:
        """`[B, M, D]` R-CNN features -> `[B, M, num_classes]` class logits."""
        return self.classifier(rcnn_features)

    def get_config(self):
        """The layer's constructor arguments."""
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "rois_per_image": self.rois_per_image,
            "roi_type": self.roi_type,
            "iou_threshold": self.iou_threshold,
            "crop_size": self.crop_size,
            "kernel_regularizer": tf_keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer else None,
        }


def mimic_losses(outputs: Dict[str, tf.Tensor], reduction: str = "sum"
                 ) -> Dict[str, tf.Tensor]:
    """`{MIMIC_LOSS, CLASS_LOSS}` (unweighted scalars) from the branch's outputs.

    Args:
      outputs: model outputs with `RCNN_FEATURES`, `FRCNN_FEATURES` `[B, M, D]`,
        `CLASS_OUTPUTS` `[B, M, C + 1]`, `CLASS_TARGETS` and `WEIGHTS` `[B, M]`.
      reduction: `sum` (Eq. 3, per image, averaged over images) or `mean` (over Omega).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    weights = tf.cast(outputs[WEIGHTS], tf.float32)
    rcnn = tf.math.l2_normalize(tf.cast(outputs[RCNN_FEATURES], tf.float32), axis=-1)
    frcnn = tf.math.l2_normalize(tf.cast(outputs[FRCNN_FEATURES], tf.float32), axis=-1)
    dissimilarity = (1.0 - tf.reduce_sum(rcnn * frcnn, axis=-1)) * weights
    sampled = tf.maximum(tf.reduce_sum(weights), 1.0)
    if reduction == "sum":
        images = tf.cast(tf.shape(weights)[0], tf.float32)
        mimic = tf.reduce_sum(dissimilarity) / tf.maximum(images, 1.0)
    else:
        mimic = tf.reduce_sum(dissimilarity) / sampled
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(outputs[CLASS_TARGETS], tf.int32),
        logits=tf.cast(outputs[CLASS_OUTPUTS], tf.float32))
    classification = tf.reduce_sum(cross_entropy * weights) / sampled
    return {MIMIC_LOSS: mimic, CLASS_LOSS: classification}
