"""Keras 3 layers: `DeformConv2D` and `DeformRoIPool` (TensorFlow backend only).

The same layers for `tf_keras` (Keras 2) are in `keras_dcn.tf_keras`.
"""

from keras_dcn.layers.deform_conv import DeformConv2D
from keras_dcn.layers.deform_roi_pool import DeformRoIPool

__all__ = ["DeformConv2D", "DeformRoIPool"]
