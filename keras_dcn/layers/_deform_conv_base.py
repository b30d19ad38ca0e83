"""`DeformConv2DBase`: the body of `DeformConv2D`, shared by Keras 3 and tf_keras.

It holds argument handling, `build` (through `add_weight`), `call` (the offset / mask
branch, then `deform_conv2d`), `compute_output_shape` and `get_config`. A concrete
layer mixes it into a framework's `Layer` class and names the framework in
`_framework` (see `_framework.Framework`, which also gives the array namespace and the
op of the backend in use).
"""

import tensorflow as tf

from keras_dcn.layers import _gradient_scale
from keras_dcn.layers._framework import plain, shape_list
from keras_dcn.layers._sampling_hook import SamplingHookMixin
from keras_dcn.ops import _args
from keras_dcn.ops import _padding


class DeformConv2DBase(SamplingHookMixin):
    """Framework-neutral body of `DeformConv2D`; see `keras_dcn.layers.DeformConv2D`."""

    _framework = None  # set by the concrete class

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 groups=1, deformable_groups=1, modulated=True, use_bias=True,
                 activation=None, offset_lr_multiplier=0.1, data_format=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, implementation="auto", **kwargs):
        framework = self._framework
        super().__init__(
            activity_regularizer=framework.regularizers.get(activity_regularizer),
            **kwargs)
        self.implementation = framework.implementation(implementation)
        self.supports_jit = framework.supports_jit(self.implementation)
        self.filters = _args.positive_int(filters, "filters")
        self.kernel_size = _args.positive_pair(plain(kernel_size), "kernel_size")
        self.strides = _args.positive_pair(plain(strides), "strides")
        self.padding = _padding.standardize(padding)
        self.dilation_rate = _args.positive_pair(plain(dilation_rate), "dilation_rate")
        self.groups = _args.positive_int(groups, "groups")
        self.deformable_groups = _args.positive_int(deformable_groups, "deformable_groups")
        if self.filters % self.groups:
            raise ValueError(
                f"filters ({self.filters}) must be divisible by groups ({self.groups})")
        self.modulated = bool(modulated)
        self.use_bias = bool(use_bias)
        self.activation = framework.activations.get(activation)
        self.offset_lr_multiplier = _gradient_scale.lr_multiplier(offset_lr_multiplier)
        self.data_format = framework.data_format(data_format)
        self.kernel_initializer = framework.initializers.get(kernel_initializer)
        self.bias_initializer = framework.initializers.get(bias_initializer)
        self.kernel_regularizer = framework.regularizers.get(kernel_regularizer)
        self.bias_regularizer = framework.regularizers.get(bias_regularizer)
        self.kernel_constraint = framework.constraints.get(kernel_constraint)
        self.bias_constraint = framework.constraints.get(bias_constraint)
        self.input_spec = framework.InputSpec(ndim=4)

    # Channels of the offset / mask branch per deformable group: 2K or 3K.
    @property
    def _taps(self):
        return self.kernel_size[0] * self.kernel_size[1] * self.deformable_groups

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        shape = shape_list(input_shape)
        if len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects 4-D inputs, got shape {tuple(shape)}")
        channels = shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the inputs of {type(self).__name__} must be "
                f"known, got shape {tuple(shape)}")
        for name, count in (("groups", self.groups),
                            ("deformable_groups", self.deformable_groups)):
            if channels % count:
                raise ValueError(
                    f"The input channels ({channels}) must be divisible by {name} ({count})")
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(kh, kw, channels // self.groups, self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint, trainable=True)
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint,
                trainable=True)
        else:
            self.bias = None
        branch = (3 if self.modulated else 2) * self._taps
        self.offset_kernel = self.add_weight(
            name="offset_kernel", shape=(kh, kw, channels, branch), initializer="zeros",
            trainable=True)
        self.offset_bias = self.add_weight(
            name="offset_bias", shape=(branch,), initializer="zeros", trainable=True)
        self.input_spec = self._framework.InputSpec(
            ndim=4, axes={self._channel_axis: channels})
        self.built = True

    def _read(self, variable, scaled=False):
        xp = self._framework.xp
        value = xp.cast(xp.convert_to_tensor(variable), self.compute_dtype)
        if scaled:
            return _gradient_scale.scale_gradient(xp, value, self.offset_lr_multiplier)
        return value

    def offsets_and_mask(self, inputs):
        """The branch's `(offsets, mask)` for channels_last `inputs` `[N, H, W, C]`.

        offsets: `[N, Ho, Wo, 2 * dg * kh * kw]` in the op's channel order; mask:
        `[N, Ho, Wo, dg * kh * kw]` after the sigmoid, or None when not modulated.
        """
        xp = self._framework.xp
        branch = xp.conv2d(inputs, self._read(self.offset_kernel, scaled=True),
                           self.strides, self.dilation_rate, self.padding)
        branch = branch + self._read(self.offset_bias, scaled=True)
        if not self.modulated:
            return branch, None
        offsets, mask = xp.split_last(branch, 2 * self._taps)
        return offsets, xp.sigmoid(mask)

    def call(self, inputs):
        return self._forward(inputs)

    # No data-dependent Python control flow here or in the ops: skip AutoGraph, whose
    # conversion of this code (and of the ops' argument checks) costs seconds a trace.
    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs):
        xp = self._framework.xp
        inputs = xp.cast(xp.convert_to_tensor(inputs), self.compute_dtype)
        first = self.data_format == "channels_first"
        if first:
            inputs = xp.transpose(inputs, (0, 2, 3, 1))
        offsets, mask = self._hooked(inputs, *self.offsets_and_mask(inputs))
        outputs = self._framework.ops.deform_conv2d(
            inputs, offsets, self._read(self.kernel), mask=mask,
            bias=None if self.bias is None else self._read(self.bias),
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
            groups=self.groups, deformable_groups=self.deformable_groups,
            implementation=self.implementation)
        if first:
            outputs = xp.transpose(outputs, (0, 3, 1, 2))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        shape = shape_list(input_shape)
        if len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects 4-D inputs, got shape {tuple(shape)}")
        if self.data_format == "channels_last":
            n, h, w = shape[0], shape[1], shape[2]
        else:
            n, h, w = shape[0], shape[2], shape[3]
        ho, wo = _padding.output_size((h, w), self.kernel_size, self.strides,
                                      self.dilation_rate, self.padding)
        if self.data_format == "channels_last":
            return (n, ho, wo, self.filters)
        return (n, self.filters, ho, wo)

    def get_config(self):
        framework = self._framework
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=plain(self.kernel_size),
            strides=plain(self.strides),
            padding=plain(self.padding),
            dilation_rate=plain(self.dilation_rate),
            groups=self.groups,
            deformable_groups=self.deformable_groups,
            modulated=self.modulated,
            use_bias=self.use_bias,
            activation=framework.activations.serialize(self.activation),
            offset_lr_multiplier=self.offset_lr_multiplier,
            data_format=self.data_format,
            kernel_initializer=framework.initializers.serialize(self.kernel_initializer),
            bias_initializer=framework.initializers.serialize(self.bias_initializer),
            kernel_regularizer=framework.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=framework.regularizers.serialize(self.bias_regularizer),
            activity_regularizer=framework.regularizers.serialize(self.activity_regularizer),
            kernel_constraint=framework.constraints.serialize(self.kernel_constraint),
            bias_constraint=framework.constraints.serialize(self.bias_constraint),
            implementation=self.implementation,
        )
        return config
