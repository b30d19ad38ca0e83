"""Model Garden's Fast R-CNN detection head with access to its fc features.

`FeatureDetectionHead` has the layers, variables and checkpoint names of
`official.vision.modeling.heads.DetectionHead` (a checkpoint of one restores into
the other) and splits its forward pass in two: `embed` (the head's convs and fc
layers, `[B, K, h, w, C]` -> `[B, K, fc_dims]`) and the class / box predictors on
top. R-CNN feature mimicking needs both halves: the fc features of the RoIs of the
Fast R-CNN pass (`last_features`, kept from the latest call) and the same fc layers
applied to the R-CNN branch's crops.

With `fc_norm=False` the fc layers have no batch normalisation (Detectron's 2fc head:
fc, ReLU, fc, ReLU); Model Garden's head normalises after each.
"""

from typing import Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling.heads import instance_heads

PACKAGE = "keras_dcn_models"


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class FeatureDetectionHead(instance_heads.DetectionHead):
    """`DetectionHead` whose fc features are reachable (see module doc).

    Args:
      fc_norm: batch normalisation after each fc layer (Model Garden's head), or
        none (Detectron's).
      *args, **kwargs: the arguments of Model Garden's `DetectionHead`.

    Attributes:
      last_features: `[B, K, fc_dims]` fc features of the RoIs of the latest call
        (in the graph of that call), or None before the first call.
    """

    def __init__(self, *args, fc_norm: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._fc_norm = bool(fc_norm)
        self.last_features = None

    def build(self, input_shape):
        super().build(input_shape)
        if not self._fc_norm:
            # Model Garden's build makes the norm layers; unbuilt, they hold no
            # variables yet, and dropping them leaves none.
            self._fc_norms = []

    def embed(self, roi_features: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """`[B, K, h, w, C]` RoI features -> `[B, K, fc_dims]` features of the last fc."""
        _, num_rois, height, width, channels = roi_features.get_shape().as_list()
        num_rois = num_rois if num_rois is not None else tf.shape(roi_features)[1]
        x = tf.reshape(roi_features, [-1, height, width, channels])
        for conv, norm in zip(self._convs, self._conv_norms):
            x = self._activation(norm(conv(x), training=training))
        x = tf.reshape(x, [-1, num_rois, height * width * x.shape[-1]])
        for index, fc in enumerate(self._fcs):
            x = fc(x)
            if self._fc_norm:
                x = self._fc_norms[index](x, training=training)
            x = self._activation(x)
        return x

    def call(self, inputs: tf.Tensor, training: Optional[bool] = None):
        """`[B, K, h, w, C]` -> class logits `[B, K, classes]`, boxes `[B, K, 4 * classes]`
        (or `[B, K, 4]` class-agnostic), as `DetectionHead`."""
        features = self.embed(inputs, training=training)
        self.last_features = features
        return self._classifier(features), self._box_regressor(features)

    def get_config(self):
        return {**super().get_config(), "fc_norm": self._fc_norm}
