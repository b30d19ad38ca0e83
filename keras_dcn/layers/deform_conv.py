"""`DeformConv2D`: a Keras 3 layer of modulated deformable convolution (DCNv2)."""

import keras

from keras_dcn.layers._deform_conv_base import DeformConv2DBase
from keras_dcn.layers._framework import PACKAGE
from keras_dcn.layers._keras import KERAS


@keras.saving.register_keras_serializable(package=PACKAGE)
class DeformConv2D(DeformConv2DBase, keras.layers.Layer):
    """Modulated deformable 2-D convolution (DCNv2), a drop-in for `keras.layers.Conv2D`.

    The layer owns the offset / mask branch of the paper: a regular convolution of the
    inputs with the same kernel size, strides, padding and dilation, zero-initialised,
    whose output has `3 * K` channels per deformable group (`K = kh * kw`): the first
    `2 * dg * K` are the offsets, in the channel order of
    `keras_dcn.ops.deform_conv2d` (channel `((g * kh + i) * kw + j) * 2` is `dy` of tap
    `(i, j)` in group `g`, the next one `dx`), the last `dg * K` go through a sigmoid
    and become the mask. Offsets therefore start at 0 and the mask at 0.5 (the output
    of a fresh layer is half that of a `Conv2D` with the same weights). With
    `modulated=False` (DCNv1) the branch has `2 * dg * K` channels and there is no mask.

    Input: `[N, H, W, C]` (channels_last) or `[N, C, H, W]` (channels_first).
    Output: `[N, Ho, Wo, filters]` or `[N, filters, Ho, Wo]`, with `Ho`, `Wo` as for
    `Conv2D`.

    Weights: `kernel` `[kh, kw, C // groups, filters]` and `bias` `[filters]`, named and
    laid out as `Conv2D`'s (so `layer.kernel.assign(conv.kernel)` loads a `Conv2D`),
    then `offset_kernel` `[kh, kw, C, (3 or 2) * dg * K]` and `offset_bias`.

    Learning rate of the branch: `offset_lr_multiplier` scales the gradient that reaches
    `offset_kernel` and `offset_bias` (identity forward, gradient times the multiplier
    backward). With plain SGD, with or without momentum, that is exactly a learning rate
    `offset_lr_multiplier` times that of the other weights, as in the paper (0.1). With
    optimizers that normalise the gradient's scale (Adam, RMSprop, Adagrad, ...) a
    constant factor on a variable's gradient cancels out of its update: there the
    multiplier only acts through the optimizer's epsilon (and on gradient clipping by
    global norm), so the branch learns at about the full rate. Set the multiplier to 1
    to leave gradients untouched. Regularizers are not applied to the branch.

    Args:
      filters: number of output channels; divisible by `groups`.
      kernel_size: int or pair `(kh, kw)`.
      strides: int or pair.
      padding: `"valid"` or `"same"` (TensorFlow's rule), or the op's explicit forms:
        an int, a pair `(ph, pw)` or `((top, bottom), (left, right))`.
      dilation_rate: int or pair. Unlike `Conv2D`, strides and dilation above 1 may be
        combined.
      groups: conv groups; input channels and `filters` must divide by it.
      deformable_groups: input channel `c` uses the offsets and mask of group
        `c // (C // deformable_groups)`.
      modulated: DCNv2 (True, with the mask) or DCNv1 (False).
      use_bias: whether to add `bias`.
      activation: applied to the output, as in `Conv2D`.
      offset_lr_multiplier: gradient factor of the branch's weights (>= 0), see above.
      data_format: `"channels_last"` or `"channels_first"`; None reads
        `keras.config.image_data_format()`.
      kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
      activity_regularizer, kernel_constraint, bias_constraint: as in `Conv2D`, for
        `kernel` and `bias`.
      implementation: `"auto"`, `"custom"` or `"composite"`, as in
        `keras_dcn.ops.deform_conv2d`.
      **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, `trainable`, ...).

    Sampling hook: `set_sampling_hook(hook)` installs `hook(layer, inputs, offsets, mask,
    rois)`, which sees the branch's offsets `[N, Ho, Wo, 2 * dg * K]` and mask
    `[N, Ho, Wo, dg * K]` (or None) before the op and returns the pair the op uses
    (`rois` is None); `set_sampling_hook(None)` removes it. `keras_dcn.analysis`
    observes the layer through it.

    Backends: on Keras' TensorFlow backend the op is `keras_dcn.ops.deform_conv2d`
    (its compiled kernels; under XLA, `Model.compile(jit_compile=True)`, its composite
    of standard ops). `supports_jit` is False there for `implementation="custom"`, and
    for `"auto"` where the CUDA kernels serve a GPU, so that Keras' `jit_compile="auto"`
    keeps the kernels (pass `implementation="composite"` to compile such a model with
    XLA). On the JAX and PyTorch backends the layer computes in `keras.ops`, the op as
    its composite (`"custom"` is refused), with the same values and gradients; the
    spatial size of the inputs must then be static.
    """

    _framework = KERAS
