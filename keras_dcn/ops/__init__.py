"""Functional ops: ``deform_conv2d`` and ``deform_roi_pool``, with their gradients."""

from keras_dcn.ops.deform_conv import deform_conv2d
from keras_dcn.ops.deform_roi_pool import deform_roi_pool

__all__ = ["deform_conv2d", "deform_roi_pool"]
