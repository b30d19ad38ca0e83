"""Functional ops: ``deform_conv2d`` and ``deform_roi_pool``, with their gradients, and
``standard_ops_only()``, under which they are built from standard TensorFlow ops."""

from keras_dcn.ops.deform_conv import deform_conv2d
from keras_dcn.ops.deform_roi_pool import deform_roi_pool
from keras_dcn.ops._implementation import IMPLEMENTATIONS, standard_ops_only

__all__ = ["deform_conv2d", "deform_roi_pool", "IMPLEMENTATIONS", "standard_ops_only"]
