"""Effective sampling locations of deformable convolutions and effective bin locations
of deformable RoI pooling (Section 2.1 of the paper).

The paper weights each sampling location (bin) by "the gradient of the network node
with respect to the sampling / bin locations". Here, with `s` the sum of the node's
values (`nodes.scalar_response`):

* Deformable convolution. Each probed layer's taps read its input at
  `p = p0 + p_k + dp_k` (`geometry.sampling_points`). Moving tap `k` of output
  position `p0` by `(ey, ex)` input pixels changes its offsets by the same amount, so
  `d s / d p = d s / d (dy_k, dx_k)` at that output position, taken through the op
  only (the offsets are watched where the layer hands them to the op, through its
  sampling hook; the offset branch upstream is not differentiated). For stacked
  layers every output position of every probed layer has its own taps: a tap outside
  the node's dependency cone gets gradient 0. Points are mapped to image pixels
  through the layer's input stride `S = image size / input size` (per axis), by the
  cell-centre rule `image = (p + 0.5) * S - 0.5` (TensorFlow's SAME padding of
  stride-2 layers places real centres up to about `S / 2` further down-right); the
  weight is the norm of the gradient per image pixel,
  `|| (d s / d p_y / S_y, d s / d p_x / S_x) ||_2`.
* Deformable RoI pooling. Bin `k` moves as a whole by `gamma * (roi_h * dy_k,
  roi_w * dx_k)` feature pixels, so its location is its centre
  (`geometry.bin_centres`, the mean of its samples) and
  `d s / d centre = d s / d (dy_k, dx_k) / (gamma * (roi_h, roi_w))`, mapped to
  image pixels through the feature stride as above. A RoI of zero height or width
  gets weight 0 on that axis.

The regular grid of a plain convolution or of aligned RoIAlign is the same op with
zero offsets (and no mask), so analysing a deformable twin whose offset branches are
zero (`DeformConv2D(modulated=False)` with the convolution's kernel, `DeformRoIPool`
with `modulated=False` and a zero offset layer) gives the effective grid locations of
the regular network.

The analysis runs the node once eagerly with a hook on the layers, then one backward
pass: the cost of one training step of the node.
"""

import contextlib
import dataclasses
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from keras_dcn.analysis import geometry
from keras_dcn.analysis import nodes
from keras_dcn.layers._deform_conv_base import DeformConv2DBase
from keras_dcn.layers._deform_roi_pool_base import DeformRoIPoolBase

CONV = "conv"
ROI = "roi"


@dataclasses.dataclass
class SamplingLocations:
    """The effective sampling (bin) locations of one call of one layer.

    Attributes:
      layer: the layer's name.
      kind: `"conv"` (DeformConv2D) or `"roi"` (DeformRoIPool).
      points: `[Ho, Wo, dg * kh * kw, 2]` (conv) or `[R, oh, ow, 2]` (roi) points
        `(y, x)` in image pixel coordinates (pixel `(r, c)` has its centre at `(r, c)`).
      weights: `[Ho, Wo, dg * kh * kw]` or `[R, oh, ow]`: norm of the gradient of the
        node with respect to each point, per image pixel (0 outside the node's
        dependency cone).
      stride: `(S_y, S_x)`, image pixels per pixel of the layer's input.
    """
    layer: str
    kind: str
    points: np.ndarray
    weights: np.ndarray
    stride: Tuple[float, float]

    def support(self) -> Tuple[np.ndarray, np.ndarray]:
        """`(points [P, 2], weights [P])` of the points with a non-zero weight."""
        keep = self.weights > 0
        return self.points[keep], self.weights[keep]


@dataclasses.dataclass
class _Record:
    layer: object
    input_shape: Tuple[int, ...]
    offsets: tf.Tensor
    rois: tf.Tensor


def _check_layers(layers) -> list:
    layers = list(layers)
    for layer in layers:
        if not isinstance(layer, (DeformConv2DBase, DeformRoIPoolBase)):
            raise ValueError(
                "layers must hold DeformConv2D / DeformRoIPool layers (keras_dcn.layers "
                f"or keras_dcn.tf_keras), got {type(layer).__name__}")
    return layers


@contextlib.contextmanager
def sampling_hook(layers: Sequence, hook):
    """Installs `hook` (see `set_sampling_hook` of the layers) on `layers` for the
    `with` block."""
    layers = _check_layers(layers)
    for layer in layers:
        layer.set_sampling_hook(hook)
    try:
        yield layers
    finally:
        for layer in layers:
            layer.set_sampling_hook(None)


def _to_image(points: np.ndarray, stride) -> np.ndarray:
    """Input-pixel points `[..., 2]` -> image pixels by the cell-centre rule."""
    return (points + 0.5) * np.asarray(stride, np.float32) - 0.5


def _conv_locations(record, gradient, image_size, name) -> SamplingLocations:
    layer = record.layer
    height, width = record.input_shape[1], record.input_shape[2]
    stride = (image_size[0] / height, image_size[1] / width)
    points = geometry.sampling_points(layer, record.offsets, (height, width))[0].numpy()
    per_tap = gradient[0].reshape(points.shape) / np.asarray(stride, np.float32)
    return SamplingLocations(name, CONV, _to_image(points, stride),
                             np.linalg.norm(per_tap, axis=-1), stride)


def _roi_locations(record, gradient, image_size, name) -> SamplingLocations:
    layer = record.layer
    if layer.gamma == 0:
        raise ValueError(f"layer {layer.name!r} has gamma 0: its bins cannot move, so "
                         "their locations have no gradient")
    height, width = record.input_shape[1], record.input_shape[2]
    stride = (image_size[0] / height, image_size[1] / width)
    centres = geometry.bin_centres(layer, record.rois, record.offsets).numpy()
    _, _, roi_h, roi_w = (v.numpy() for v in geometry.roi_boxes(layer, record.rois))
    scale = layer.gamma * np.stack([roi_h, roi_w], -1)[:, None, None, :]  # [R, 1, 1, 2]
    per_pixel = np.divide(gradient, scale, out=np.zeros_like(gradient),
                          where=scale != 0) / np.asarray(stride, np.float32)
    return SamplingLocations(name, ROI, _to_image(centres, stride),
                             np.linalg.norm(per_pixel, axis=-1), stride)


def effective_sampling_locations(node: nodes.Node, image, layers: Sequence
                                 ) -> List[SamplingLocations]:
    """Effective sampling / bin locations of `layers` for `node` (see the module doc).

    Args:
      node: `node(images [1, H, W, C]) -> response` (`keras_dcn.analysis.nodes`).
      image: `[H, W, C]` or `[1, H, W, C]`.
      layers: `DeformConv2D` / `DeformRoIPool` layers (Keras 3 or tf_keras) the node
        runs; `nodes.deformable_layers(model)` lists a model's.

    Returns:
      One `SamplingLocations` per call of a probed layer in the node's forward pass,
      in call order (a layer called twice appears twice, named `name:1`, ...; calls
      on zero RoIs are left out). Layers the node does not run give none.
    """
    layers = _check_layers(layers)
    images = nodes.image_batch(image)
    records = []

    def hook(layer, inputs, offsets, mask, rois):
        tape.watch(offsets)
        records.append(_Record(layer, tuple(inputs.shape), offsets, rois))
        return offsets, mask

    with tf.GradientTape() as tape, sampling_hook(layers, hook):
        response = nodes.scalar_response(node(images))
    gradients = tape.gradient(response, [record.offsets for record in records],
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
    image_size = tuple(images.shape[1:3])
    calls = {}
    results = []
    for record, gradient in zip(records, gradients):
        layer = record.layer
        count = calls.get(id(layer), 0)
        calls[id(layer)] = count + 1
        name = layer.name if count == 0 else f"{layer.name}:{count}"
        gradient = tf.cast(gradient, tf.float32).numpy()
        if isinstance(layer, DeformConv2DBase):
            results.append(_conv_locations(record, gradient, image_size, name))
        elif record.offsets.shape[0] != 0:
            results.append(_roi_locations(record, gradient, image_size, name))
    return results
