"""`DeformRoIPool`: a Keras 3 layer of modulated deformable RoI pooling (DCNv2)."""

import keras

from keras_dcn.layers._deform_roi_pool_base import DeformRoIPoolBase
from keras_dcn.layers._framework import PACKAGE
from keras_dcn.layers._keras import KERAS


@keras.saving.register_keras_serializable(package=PACKAGE)
class DeformRoIPool(DeformRoIPoolBase, keras.layers.Layer):
    """Modulated deformable RoI pooling (DCNv2) with its offset / mask branch.

    Called as `layer(features, rois)`:

    1. RoIAlign of every RoI (`keras_dcn.ops.deform_roi_pool` without offsets),
       flattened in `(oh, ow, C)` order whatever the data format;
    2. two fully connected layers of `hidden_units` with ReLU, weights drawn from a
       normal distribution of standard deviation 0.01 (`hidden_initializer`), biases 0;
    3. a zero-initialised fully connected layer with `3 * K` outputs (`K = oh * ow`),
       `2 * K` for `modulated=False`. Output `2 * k` is `dy` and `2 * k + 1` is `dx` of
       bin `k = ph * ow + pw`, in units of the RoI height / width (the op multiplies
       them by `gamma` and the RoI size); the last `K` go through a sigmoid and become
       the mask of each bin;
    4. `deform_roi_pool` of the features with those offsets `[R, oh, ow, 2]` and mask
       `[R, oh, ow, 1]`.

    A fresh layer therefore returns RoIAlign times 0.5 (times 1 for
    `modulated=False`).

    Inputs:
      features: `[N, H, W, C]` (channels_last) or `[N, C, H, W]` (channels_first).
      rois: `[R, 5]`, rows `(batch_index, x1, y1, x2, y2)` in input-image pixels
        (torchvision / mmcv convention). They are never cast to the compute dtype of
        a mixed-precision policy (the op reads boxes in float32, or in float64 for
        float64 features).
    Output: `[R, oh, ow, C]` (channels_last) or `[R, C, oh, ow]` (channels_first).

    Weights: `hidden1_kernel` `[oh * ow * C, hidden_units]`, `hidden1_bias`,
    `hidden2_kernel` `[hidden_units, hidden_units]`, `hidden2_bias`, `offset_kernel`
    `[hidden_units, (3 or 2) * K]`, `offset_bias`.

    Args:
      output_size: `(oh, ow)` or an int for a square output.
      spatial_scale: feature-map size / image size (1 / stride of the features).
      sampling_ratio: sample points per bin along each axis; `<= 0` for adaptive.
      gamma: scale of the offsets (0.1 in DCNv1 and the authors' code; DCNv2's
        text gives no value).
      aligned: shift the boxes by -0.5 pixel (torchvision's `aligned=True`).
      modulated: DCNv2 (True, with the mask) or DCNv1 (False).
      hidden_units: width of the two hidden fully connected layers (1024 in the paper).
      data_format: of `features` and the output; None reads
        `keras.config.image_data_format()`.
      offset_lr_multiplier: gradient factor of all branch weights (the paper trains
        this branch at the full rate: 1.0); see `DeformConv2D` for what it means with
        adaptive optimizers.
      hidden_initializer: initializer of the two hidden kernels; None for
        `RandomNormal(stddev=0.01)`.
      kernel_regularizer, bias_regularizer: for the branch's kernels and biases.
      implementation: `"auto"`, `"custom"` or `"composite"`, as in
        `keras_dcn.ops.deform_roi_pool`.
      **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, `trainable`, ...).

    Sampling hook: `set_sampling_hook(hook)` installs `hook(layer, features, offsets,
    mask, rois)`, which sees the branch's offsets `[R, oh, ow, 2]` and mask
    `[R, oh, ow, 1]` (or None) before the op and returns the pair the op uses;
    `set_sampling_hook(None)` removes it. `keras_dcn.analysis` observes the layer
    through it.

    The two halves also run apart, on channels_last tensors of a built layer:
    `offsets_and_mask_of_pooled(pooled)` runs the branch (steps 2-3) on RoIAlign
    features `[R, oh, ow, C]`, and `pool_deformed(features, rois, offsets, mask)` runs
    step 4 (sampling hook included). A multilevel aligner pools each RoI from its own
    feature map but runs the branch once for all of them.

    Backends as for `DeformConv2D`. On JAX and PyTorch the RoIs are checked as the
    kernels check them where their values are known (eagerly); inside `jax.jit` (as in
    `Model.fit`) they cannot be, and `sampling_ratio` must be > 0 there.
    """

    _framework = KERAS

    def _configure(self):
        # Keras would cast every float argument to the compute dtype, rois included;
        # boxes in float16 / bfloat16 lose whole pixels. `call` casts the features.
        self._convert_input_args = False

    def __call__(self, features, rois, **kwargs):
        # Without Keras' argument conversion, arrays must become tensors here.
        features, rois = (
            x if keras.backend.is_keras_tensor(x) or keras.ops.is_tensor(x)
            else keras.ops.convert_to_tensor(x)
            for x in (features, rois))
        return super().__call__(features, rois, **kwargs)
