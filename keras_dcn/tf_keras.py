"""The keras_dcn layers for `tf_keras` (Keras 2), as used by TF Model Garden.

`keras_dcn.tf_keras.DeformConv2D` and `keras_dcn.tf_keras.DeformRoIPool` take the
same arguments, hold the same weights (same names, shapes and order) and compute the
same outputs as `keras_dcn.layers.DeformConv2D` and `keras_dcn.layers.DeformRoIPool`
(sampling hook included): each pair shares one body (`keras_dcn.layers._deform_conv_base`,
`keras_dcn.layers._deform_roi_pool_base`). They are registered as serializable in
tf_keras under the package "keras_dcn". Importing this module imports `tf_keras`;
`import keras_dcn` alone does not.
"""

import tf_keras

from keras_dcn.layers._deform_conv_base import DeformConv2DBase
from keras_dcn.layers._deform_roi_pool_base import DeformRoIPoolBase
from keras_dcn.layers._framework import PACKAGE, Framework

TF_KERAS = Framework(
    name="tf_keras",
    initializers=tf_keras.initializers,
    regularizers=tf_keras.regularizers,
    constraints=tf_keras.constraints,
    activations=tf_keras.activations,
    input_spec=tf_keras.layers.InputSpec,
    get_uid=tf_keras.backend.get_uid,
    image_data_format=tf_keras.backend.image_data_format,
)


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class DeformConv2D(DeformConv2DBase, tf_keras.layers.Layer):
    """`keras_dcn.layers.DeformConv2D` for tf_keras: a drop-in for
    `tf_keras.layers.Conv2D`.

    Inputs `[N, H, W, C]` or `[N, C, H, W]`; output `[N, Ho, Wo, filters]` or
    `[N, filters, Ho, Wo]`; `kernel` `[kh, kw, C // groups, filters]`. `data_format`
    None reads `tf_keras.backend.image_data_format()`. See
    `keras_dcn.layers.DeformConv2D` for the arguments and the offset / mask branch.
    """

    _framework = TF_KERAS


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class DeformRoIPool(DeformRoIPoolBase, tf_keras.layers.Layer):
    """`keras_dcn.layers.DeformRoIPool` for tf_keras, called as `layer(features, rois)`.

    features `[N, H, W, C]` or `[N, C, H, W]`; rois `[R, 5]` rows
    `(batch_index, x1, y1, x2, y2)` in image pixels (not cast by a mixed-precision
    policy); output `[R, oh, ow, C]` or `[R, C, oh, ow]`. See
    `keras_dcn.layers.DeformRoIPool` for the arguments and the branch.
    """

    _framework = TF_KERAS


__all__ = ["DeformConv2D", "DeformRoIPool"]
