"""How much a trained deformable Mask R-CNN deforms: offset and modulation statistics.

`deformation_statistics(model, images)` runs the model in inference mode on a batch
of validation images (the `images` of Model Garden's input pipeline, with their
`image_info`) and watches every deformable layer through its sampling hook:

* per backbone stage (`conv2` ... `conv5`, from the layer's output stride), over all
  taps of all output positions: the mean length of the offsets in pixels of the
  layer's input, the share of offsets longer than one pixel, and the mean and
  standard deviation of the modulation (DCNv2);
* for each deformable RoI pooling (`box` and `mask` aligners), over all bins of all
  RoIs: the mean length of the bin displacement relative to the RoI's size
  (`gamma * |(dy, dx)|`), and the modulation's mean and standard deviation.

A regular model has no deformable layer and gives an empty dict.
"""

import math
from collections import defaultdict

import numpy as np
import tensorflow as tf

from keras_dcn import tf_keras as dcn_layers


def _summary(lengths, masks):
    # In float64: a bfloat16 model's values would otherwise be summed in bfloat16, whose
    # running sum stops growing once it is 256 times larger than a term.
    lengths = np.concatenate(lengths).astype(np.float64) if lengths else np.zeros(0)
    entry = {"offset_mean": float(lengths.mean()) if lengths.size else float("nan"),
             "offset_over_1": float((lengths > 1).mean()) if lengths.size else float("nan")}
    if masks:
        values = np.concatenate(masks).astype(np.float64)
        entry.update(mask_mean=float(values.mean()), mask_std=float(values.std()))
    return entry


def deformation_statistics(model, images: tf.Tensor, image_info: tf.Tensor) -> dict:
    """`{'conv3': {...}, ..., 'box RoI pooling': {...}, 'mask RoI pooling': {...}}` for
    `model` (a `DcnMaskRCNNModel`) on `images` `[B, H, W, 3]` (see the module doc)."""
    input_size = int(images.shape[1])
    conv_lengths, conv_masks = defaultdict(list), defaultdict(list)
    pool_lengths, pool_masks = defaultdict(list), defaultdict(list)
    hooked = []

    def watch_conv(layer, inputs, offsets, mask, rois):
        stage = f"conv{int(round(math.log2(input_size / int(offsets.shape[1]))))}"
        pairs = tf.reshape(offsets, [-1, 2])
        conv_lengths[stage].append(tf.norm(pairs, axis=-1).numpy())
        if mask is not None:
            conv_masks[stage].append(tf.reshape(mask, [-1]).numpy())
        return offsets, mask

    def watch_pool(name):
        def watch(layer, inputs, offsets, mask, rois):
            pairs = tf.reshape(offsets, [-1, 2]) * layer.gamma
            pool_lengths[name].append(tf.norm(pairs, axis=-1).numpy())
            if mask is not None:
                pool_masks[name].append(tf.reshape(mask, [-1]).numpy())
            return offsets, mask
        return watch

    for layer in model.backbone.submodules:
        if isinstance(layer, dcn_layers.DeformConv2D):
            layer.set_sampling_hook(watch_conv)
            hooked.append(layer)
    aligners = (("box RoI pooling", model.roi_aligner),
                ("mask RoI pooling", getattr(model, "mask_roi_aligner", None)))
    for name, aligner in aligners:
        pool = getattr(aligner, "pool", None)
        if isinstance(pool, dcn_layers.DeformRoIPool):
            pool.set_sampling_hook(watch_pool(name))
            hooked.append(pool)
    try:
        if hooked:
            model(images, image_shape=image_info[:, 1, :], training=False)
    finally:
        for layer in hooked:
            layer.set_sampling_hook(None)
    stats = {stage: _summary(conv_lengths[stage], conv_masks[stage])
             for stage in sorted(conv_lengths)}
    stats.update({name: _summary(pool_lengths[name], pool_masks[name])
                  for name in sorted(pool_lengths)})
    return stats
