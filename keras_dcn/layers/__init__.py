"""Keras 3 layers: `DeformConv2D` and `DeformRoIPool`, on Keras' TensorFlow, JAX and
PyTorch backends.

The same layers for `tf_keras` (Keras 2) are in `keras_dcn.tf_keras`. Both flavours share
one body per layer (`_deform_conv_base`, `_deform_roi_pool_base`) that reaches its
framework through `_framework.Framework` (`_keras` binds Keras 3); the offset branches'
gradient scaling is in `_gradient_scale`, the sampling hook in `_sampling_hook`.
"""

from keras_dcn.layers.deform_conv import DeformConv2D
from keras_dcn.layers.deform_roi_pool import DeformRoIPool

__all__ = ["DeformConv2D", "DeformRoIPool"]
