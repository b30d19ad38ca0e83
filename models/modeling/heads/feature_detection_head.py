"""Model Garden's Fast R-CNN detection head with access to its fc features.

`FeatureDetectionHead` has the layers, variables and checkpoint names of
`official.vision.modeling.heads.DetectionHead` (a checkpoint of one restores into
the other) and splits its forward pass in two: `embed` (the head's convs and fc
layers, `[B, K, h, w, C]` -> `[B, K, fc_dims]`) and the class / box predictors on
top. R-CNN feature mimicking needs both halves: the fc features of the RoIs of the
Fast R-CNN pass (`last_features`, kept from the latest call) and the same fc layers
applied to the R-CNN branch's crops.
"""

from typing import Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling.heads import instance_heads

PACKAGE = "keras_dcn_models"


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class FeatureDetectionHead(instance_heads.DetectionHead):
    """`DetectionHead` whose fc features are reachable (see module doc).

    Attributes:
      last_features: `[B, K, fc_dims]` fc features of the RoIs of the latest call
        (in the graph of that call), or None before the first call.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_features = None

    def embed(self, roi_features: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """`[B, K, h, w, C]` RoI features -> `[B, K, fc_dims]` features of the last fc."""
        _, num_rois, height, width, channels = roi_features.get_shape().as_list()
        num_rois = num_rois if num_rois is not None else tf.shape(roi_features)[1]
        x = tf.reshape(roi_features, [-1, height, width, channels])
        for conv, norm in zip(self._convs, self._conv_norms):
            x = self._activation(norm(conv(x), training=training))
        x = tf.reshape(x, [-1, num_rois, height * width * x.shape[-1]])
        for fc, norm in zip(self._fcs, self._fc_norms):
            x = self._activation(norm(fc(x), training=training))
        return x

    def call(self, inputs: tf.Tensor, training: Optional[bool] = None):
        """`[B, K, h, w, C]` -> class logits `[B, K, classes]`, boxes `[B, K, 4 * classes]`
        (or `[B, K, 4]` class-agnostic), as `DetectionHead`."""
        features = self.embed(inputs, training=training)
        self.last_features = features
        return self._classifier(features), self._box_regressor(features)
