"""The logic of the deformable layers, written once for Keras 3 and for tf_keras.

`DeformConv2DBase` and `DeformRoIPoolBase` hold argument handling, `build` (through
`add_weight`), `call` (through `keras_dcn.ops`), `compute_output_shape` and
`get_config`. A concrete layer mixes one of them into a framework's `Layer` class and
names the framework in `_framework` (a `Framework`), which supplies initializers,
regularizers, constraints, activations, `InputSpec` and the default data format.
Everything else is plain TensorFlow, so both bindings run the same graph.

Both bases also carry the sampling geometry the spatial-support analysis
(`keras_dcn.analysis`) needs: `SamplingHookMixin.set_sampling_hook` (observe or
replace the offsets and mask between the branch and the op),
`DeformConv2DBase.sampling_points` and `DeformRoIPoolBase.bin_centres`.
"""

import numbers

import tensorflow as tf

from keras_dcn import ops as dcn_ops
from keras_dcn.ops import _args
from keras_dcn.ops.deform_conv import _padding as _parse_padding

# Names under which the layers are registered, in both frameworks' registries.
PACKAGE = "keras_dcn"


class Framework:
    """The pieces of a Keras flavour (`keras` 3 or `tf_keras`) the layers use."""

    def __init__(self, name, initializers, regularizers, constraints, activations,
                 input_spec, image_data_format, get_uid, check=None):
        self.name = name
        self.initializers = initializers
        self.regularizers = regularizers
        self.constraints = constraints
        self.activations = activations
        self.InputSpec = input_spec
        self.image_data_format = image_data_format
        self.get_uid = get_uid
        self.check = check or (lambda layer_name: None)

    def unique_name(self, prefix):
        """`prefix`, then `prefix_1`, `prefix_2`, ... (Keras' naming of layers)."""
        uid = self.get_uid(prefix)
        return prefix if uid == 1 else f"{prefix}_{uid - 1}"


def scale_gradient(x, multiplier):
    """`x` in the forward pass; the gradient flowing back through it times `multiplier`.

    With a multiplier of 1 the tensor is returned unchanged (no extra op).
    """
    if multiplier == 1:
        return x

    @tf.custom_gradient
    def _scaled_identity(value):
        def grad(upstream):
            return upstream * tf.cast(multiplier, upstream.dtype)

        return tf.identity(value), grad

    return _scaled_identity(x)


def _plain(value):
    """Nested tuples / lists (possibly wrapped by a framework's tracking) as tuples."""
    if isinstance(value, (str, numbers.Number)) or value is None:
        return value
    return tuple(_plain(v) for v in value)


def normalize_padding(padding):
    """`"valid"` / `"same"` (any case), an int, a pair or `((top, bottom), (left, right))`.

    Returns the same form with strings lowercased and sequences as tuples; the op
    checks the values again.
    """
    if isinstance(padding, str):
        lowered = padding.lower()
        if lowered not in ("valid", "same"):
            raise ValueError(
                f'padding must be "valid", "same", an int, a pair (ph, pw) or '
                f"((top, bottom), (left, right)), got {padding!r}")
        return lowered
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        explicit = padding
    else:
        try:
            explicit = _plain(padding)
        except TypeError:
            explicit = padding
    explicit_pads(explicit)  # raises ValueError for a malformed value
    return explicit


def explicit_pads(padding):
    """`(top, bottom, left, right)` of an explicit padding, None for a string one."""
    if isinstance(padding, str):
        return None
    _, pads = _parse_padding(padding)  # the op's own rules and error message
    return tuple(pads)


def conv_output_length(size, kernel, stride, dilation, padding, before=0, after=0):
    """Output length of one spatial axis of a convolution, None when unknown."""
    if size is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding == "same":
        return -(-size // stride)
    padded = size + before + after
    if padded < effective:
        return 0
    return (padded - effective) // stride + 1


def _data_format(value, framework):
    if value is None:
        value = framework.image_data_format()
    return _args.data_format(str(value).lower())


def _shape_list(shape):
    """A shape (tuple, list or TensorShape) as a list of ints / None."""
    return list(tf.TensorShape(shape).as_list())


class SamplingHookMixin:
    """An optional observer of the offsets and mask a deformable layer samples with.

    `set_sampling_hook(hook)` installs `hook(layer, inputs, offsets, mask, rois)`,
    called in every forward pass between the offset / mask branch and the op, with
    channels_last tensors: for `DeformConv2D` `inputs` `[N, H, W, C]`, `offsets`
    `[N, Ho, Wo, 2 * dg * kh * kw]`, `mask` `[N, Ho, Wo, dg * kh * kw]` or None and
    `rois` None; for `DeformRoIPool` `inputs` the features `[N, H, W, C]`, `offsets`
    `[R, oh, ow, 2]`, `mask` `[R, oh, ow, 1]` or None and `rois` `[R, 5]`. It returns
    the `(offsets, mask)` the op then uses: the same tensors to observe them (for
    example to watch them on a `tf.GradientTape`), others to perturb them.
    `set_sampling_hook(None)` removes it. The hook runs when the layer's Python code
    runs: eagerly, or when a `tf.function` traces it.
    """

    _sampling_hook = None

    def set_sampling_hook(self, hook):
        """Installs `hook` (a callable, see the class doc) or removes it (None)."""
        if hook is not None and not callable(hook):
            raise ValueError(f"hook must be a callable or None, got {hook!r}")
        # Not an attribute the frameworks track: a plain Python value.
        object.__setattr__(self, "_sampling_hook", hook)

    def _hooked(self, inputs, offsets, mask, rois=None):
        hook = self._sampling_hook
        if hook is None:
            return offsets, mask
        return hook(self, inputs, offsets, mask, rois)


class DeformConv2DBase(SamplingHookMixin):
    """Framework-neutral body of `DeformConv2D`; see `keras_dcn.layers.DeformConv2D`."""

    _framework = None  # set by the concrete class
    supports_jit = False  # the ops have no XLA kernels

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 groups=1, deformable_groups=1, modulated=True, use_bias=True,
                 activation=None, offset_lr_multiplier=0.1, data_format=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        framework = self._framework
        framework.check(type(self).__name__)
        super().__init__(
            activity_regularizer=framework.regularizers.get(activity_regularizer),
            **kwargs)
        self.supports_jit = False
        self.filters = _args.positive_int(filters, "filters")
        self.kernel_size = _args.positive_pair(_plain(kernel_size), "kernel_size")
        self.strides = _args.positive_pair(_plain(strides), "strides")
        self.padding = normalize_padding(padding)
        self.dilation_rate = _args.positive_pair(_plain(dilation_rate), "dilation_rate")
        self.groups = _args.positive_int(groups, "groups")
        self.deformable_groups = _args.positive_int(deformable_groups, "deformable_groups")
        if self.filters % self.groups:
            raise ValueError(
                f"filters ({self.filters}) must be divisible by groups ({self.groups})")
        self.modulated = bool(modulated)
        self.use_bias = bool(use_bias)
        self.activation = framework.activations.get(activation)
        self.offset_lr_multiplier = _args.finite_float(
            offset_lr_multiplier, "offset_lr_multiplier")
        if self.offset_lr_multiplier < 0:
            raise ValueError(
                f"offset_lr_multiplier must be >= 0, got {offset_lr_multiplier!r}")
        self.data_format = _data_format(data_format, framework)
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
        shape = _shape_list(input_shape)
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
        value = tf.cast(tf.convert_to_tensor(variable), self.compute_dtype)
        return scale_gradient(value, self.offset_lr_multiplier) if scaled else value

    def _branch_padding(self):
        pads = explicit_pads(self.padding)
        if pads is None:
            return self.padding.upper()
        top, bottom, left, right = pads
        return [[0, 0], [top, bottom], [left, right], [0, 0]]

    def offsets_and_mask(self, inputs):
        """The branch's `(offsets, mask)` for channels_last `inputs` `[N, H, W, C]`.

        offsets: `[N, Ho, Wo, 2 * dg * kh * kw]` in the op's channel order; mask:
        `[N, Ho, Wo, dg * kh * kw]` after the sigmoid, or None when not modulated.
        """
        branch = tf.nn.conv2d(
            inputs, self._read(self.offset_kernel, scaled=True), strides=self.strides,
            padding=self._branch_padding(), dilations=self.dilation_rate)
        branch = tf.nn.bias_add(branch, self._read(self.offset_bias, scaled=True))
        offsets = branch[..., :2 * self._taps]
        mask = tf.sigmoid(branch[..., 2 * self._taps:]) if self.modulated else None
        return offsets, mask

    def pads_before(self, height, width):
        """`(top, left)` padding the op applies to an input of `height` x `width`."""
        pads = explicit_pads(self.padding)
        if pads is not None:
            return pads[0], pads[2]
        if self.padding == "valid":
            return 0, 0
        before = []
        for size, kernel, stride, dilation in zip(
                (height, width), self.kernel_size, self.strides, self.dilation_rate):
            out = conv_output_length(size, kernel, stride, dilation, "same")
            total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            before.append(total // 2)  # TensorFlow's SAME: the odd pixel goes after
        return tuple(before)

    def sampling_points(self, offsets, input_size):
        """Where each tap reads, in the input's pixel coordinates.

        Args:
          offsets: `[N, Ho, Wo, 2 * dg * kh * kw]`, the op's channel order.
          input_size: `(H, W)` of the layer's input.

        Returns:
          `[N, Ho, Wo, dg * kh * kw, 2]` points `(y, x)`:
          `y = ho * stride_h - pad_top + i * dilation_h + dy` and likewise `x`.
        """
        offsets = tf.convert_to_tensor(offsets)
        top, left = self.pads_before(*input_size)
        kh, kw = self.kernel_size
        shape = tf.shape(offsets)
        ho = tf.range(shape[1], dtype=offsets.dtype) * self.strides[0] - top
        wo = tf.range(shape[2], dtype=offsets.dtype) * self.strides[1] - left
        ti = tf.range(kh, dtype=offsets.dtype) * self.dilation_rate[0]
        tj = tf.range(kw, dtype=offsets.dtype) * self.dilation_rate[1]
        grid = [shape[1], shape[2], kh, kw]
        base_y = tf.broadcast_to(ho[:, None, None, None] + ti[None, None, :, None], grid)
        base_x = tf.broadcast_to(wo[None, :, None, None] + tj[None, None, None, :], grid)
        base = tf.reshape(tf.stack([base_y, base_x], -1),
                          [1, shape[1], shape[2], 1, kh * kw, 2])
        deltas = tf.reshape(
            offsets, [shape[0], shape[1], shape[2], self.deformable_groups, kh * kw, 2])
        return tf.reshape(base + deltas, [shape[0], shape[1], shape[2], self._taps, 2])

    def call(self, inputs):
        return self._forward(inputs)

    # No data-dependent Python control flow here or in the ops: skip AutoGraph, whose
    # conversion of this code (and of the ops' argument checks) costs seconds a trace.
    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype != self.compute_dtype:
            inputs = tf.cast(inputs, self.compute_dtype)
        first = self.data_format == "channels_first"
        if first:
            inputs = _args.to_channels_last(inputs)
        offsets, mask = self._hooked(inputs, *self.offsets_and_mask(inputs))
        outputs = dcn_ops.deform_conv2d(
            inputs, offsets, self._read(self.kernel), mask=mask,
            bias=None if self.bias is None else self._read(self.bias),
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
            groups=self.groups, deformable_groups=self.deformable_groups,
            data_format="channels_last")
        if first:
            outputs = _args.to_channels_first(outputs)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        shape = _shape_list(input_shape)
        if len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects 4-D inputs, got shape {tuple(shape)}")
        if self.data_format == "channels_last":
            n, h, w = shape[0], shape[1], shape[2]
        else:
            n, h, w = shape[0], shape[2], shape[3]
        pads = explicit_pads(self.padding) or (0, 0, 0, 0)
        mode = self.padding if isinstance(self.padding, str) else "explicit"
        ho = conv_output_length(h, self.kernel_size[0], self.strides[0],
                                self.dilation_rate[0], mode, *pads[:2])
        wo = conv_output_length(w, self.kernel_size[1], self.strides[1],
                                self.dilation_rate[1], mode, *pads[2:])
        if self.data_format == "channels_last":
            return (n, ho, wo, self.filters)
        return (n, self.filters, ho, wo)

    def get_config(self):
        framework = self._framework
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=_plain(self.kernel_size),
            strides=_plain(self.strides),
            padding=_plain(self.padding),
            dilation_rate=_plain(self.dilation_rate),
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
        )
        return config


class DeformRoIPoolBase(SamplingHookMixin):
    """Framework-neutral body of `DeformRoIPool`; see `keras_dcn.layers.DeformRoIPool`."""

    _framework = None  # set by the concrete class
    supports_jit = False  # the ops have no XLA kernels

    def __init__(self, output_size=7, spatial_scale=1.0, sampling_ratio=2, gamma=0.1,
                 aligned=True, modulated=True, hidden_units=1024, data_format=None,
                 offset_lr_multiplier=1.0, hidden_initializer=None,
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        framework = self._framework
        framework.check(type(self).__name__)
        if kwargs.get("name") is None:  # rather than Keras' "deform_ro_i_pool"
            kwargs["name"] = framework.unique_name("deform_roi_pool")
        super().__init__(**kwargs)
        self.supports_jit = False
        self.output_size = _args.positive_pair(_plain(output_size), "output_size")
        self.spatial_scale = _args.finite_float(spatial_scale, "spatial_scale", positive=True)
        self.sampling_ratio = _args.integer(sampling_ratio, "sampling_ratio")
        self.gamma = _args.finite_float(gamma, "gamma")
        self.aligned = bool(aligned)
        self.modulated = bool(modulated)
        self.hidden_units = _args.positive_int(hidden_units, "hidden_units")
        self.data_format = _data_format(data_format, framework)
        self.offset_lr_multiplier = _args.finite_float(
            offset_lr_multiplier, "offset_lr_multiplier")
        if self.offset_lr_multiplier < 0:
            raise ValueError(
                f"offset_lr_multiplier must be >= 0, got {offset_lr_multiplier!r}")
        if hidden_initializer is None:
            hidden_initializer = framework.initializers.RandomNormal(mean=0.0, stddev=0.01)
        self.hidden_initializer = framework.initializers.get(hidden_initializer)
        self.kernel_regularizer = framework.regularizers.get(kernel_regularizer)
        self.bias_regularizer = framework.regularizers.get(bias_regularizer)
        self._configure()

    def _configure(self):
        """Framework-specific set-up at the end of `__init__` (none by default)."""

    @property
    def _bins(self):
        return self.output_size[0] * self.output_size[1]

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, features_shape, rois_shape=None):
        shape = _shape_list(features_shape)
        if len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects 4-D features, got shape {tuple(shape)}")
        channels = shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the features of {type(self).__name__} must be "
                f"known, got shape {tuple(shape)}")
        if rois_shape is not None:
            rois = _shape_list(rois_shape)
            if len(rois) != 2 or rois[1] not in (None, 5):
                raise ValueError(
                    f"rois must have shape [R, 5] (batch_index, x1, y1, x2, y2), "
                    f"got {tuple(rois)}")
        sizes = (self._bins * channels, self.hidden_units, self.hidden_units)
        initializers = self._framework.initializers
        for index in (1, 2):
            # A copy per kernel: an unseeded initializer object repeats its values.
            initializer = initializers.get(initializers.serialize(self.hidden_initializer))
            setattr(self, f"hidden{index}_kernel", self.add_weight(
                name=f"hidden{index}_kernel", shape=sizes[index - 1:index + 1],
                initializer=initializer, regularizer=self.kernel_regularizer,
                trainable=True))
            setattr(self, f"hidden{index}_bias", self.add_weight(
                name=f"hidden{index}_bias", shape=(self.hidden_units,), initializer="zeros",
                regularizer=self.bias_regularizer, trainable=True))
        outputs = (3 if self.modulated else 2) * self._bins
        self.offset_kernel = self.add_weight(
            name="offset_kernel", shape=(self.hidden_units, outputs), initializer="zeros",
            regularizer=self.kernel_regularizer, trainable=True)
        self.offset_bias = self.add_weight(
            name="offset_bias", shape=(outputs,), initializer="zeros",
            regularizer=self.bias_regularizer, trainable=True)
        self.built = True

    def _read(self, variable):
        value = tf.cast(tf.convert_to_tensor(variable), self.compute_dtype)
        return scale_gradient(value, self.offset_lr_multiplier)

    def _pool(self, features, rois, offsets=None, mask=None):
        return dcn_ops.deform_roi_pool(
            features, rois, offsets=offsets, mask=mask, output_size=self.output_size,
            spatial_scale=self.spatial_scale, sampling_ratio=self.sampling_ratio,
            gamma=self.gamma, aligned=self.aligned, data_format="channels_last")

    def offsets_and_mask(self, features, rois):
        """The branch's `(offsets, mask)` for channels_last `features` `[N, H, W, C]`.

        offsets: `[R, oh, ow, 2]` as `(dy, dx)` in units of the RoI height / width;
        mask: `[R, oh, ow, 1]` after the sigmoid, or None when not modulated.
        """
        oh, ow = self.output_size
        pooled = self._pool(features, rois)  # plain RoIAlign
        hidden = tf.reshape(pooled, [-1, self._bins * features.shape[-1]])
        for index in (1, 2):
            hidden = tf.nn.relu(tf.nn.bias_add(
                tf.matmul(hidden, self._read(getattr(self, f"hidden{index}_kernel"))),
                self._read(getattr(self, f"hidden{index}_bias"))))
        branch = tf.nn.bias_add(tf.matmul(hidden, self._read(self.offset_kernel)),
                                self._read(self.offset_bias))
        offsets = tf.reshape(branch[:, :2 * self._bins], [-1, oh, ow, 2])
        mask = None
        if self.modulated:
            mask = tf.sigmoid(tf.reshape(branch[:, 2 * self._bins:], [-1, oh, ow, 1]))
        return offsets, mask

    def roi_boxes(self, rois):
        """`(y0, x0, height, width)`, each `[R]`: the RoIs on the feature map, in its
        pixel coordinates (after `spatial_scale`, the `aligned` shift and, without
        it, the one-pixel minimum size)."""
        rois = tf.cast(tf.convert_to_tensor(rois), tf.float32)
        shift = 0.5 if self.aligned else 0.0
        x0 = rois[:, 1] * self.spatial_scale - shift
        y0 = rois[:, 2] * self.spatial_scale - shift
        width = (rois[:, 3] - rois[:, 1]) * self.spatial_scale
        height = (rois[:, 4] - rois[:, 2]) * self.spatial_scale
        if not self.aligned:
            width, height = tf.maximum(width, 1.0), tf.maximum(height, 1.0)
        return y0, x0, height, width

    def bin_centres(self, rois, offsets=None):
        """Centre of each (moved) bin, in the feature map's pixel coordinates.

        Args:
          rois: `[R, 5]` rows `(batch_index, x1, y1, x2, y2)` in image pixels.
          offsets: `[R, oh, ow, 2]` normalised `(dy, dx)`, or None for none.

        Returns:
          `[R, oh, ow, 2]` points `(y, x)`: `y0 + (ph + 0.5) * height / oh +
          gamma * height * dy` and likewise `x` (the mean of the bin's samples).
        """
        y0, x0, height, width = self.roi_boxes(rois)
        oh, ow = self.output_size
        ph = (tf.range(oh, dtype=tf.float32) + 0.5) / oh
        pw = (tf.range(ow, dtype=tf.float32) + 0.5) / ow
        y = y0[:, None, None] + height[:, None, None] * ph[None, :, None]
        x = x0[:, None, None] + width[:, None, None] * pw[None, None, :]
        y = tf.broadcast_to(y, [tf.size(y0), oh, ow])
        x = tf.broadcast_to(x, [tf.size(y0), oh, ow])
        if offsets is not None:
            offsets = tf.cast(offsets, tf.float32)
            y = y + self.gamma * height[:, None, None] * offsets[..., 0]
            x = x + self.gamma * width[:, None, None] * offsets[..., 1]
        return tf.stack([y, x], -1)

    def call(self, features, rois):
        return self._forward(features, rois)

    @tf.autograph.experimental.do_not_convert
    def _forward(self, features, rois):
        features = tf.convert_to_tensor(features)
        if features.dtype != self.compute_dtype:
            features = tf.cast(features, self.compute_dtype)
        rois = tf.convert_to_tensor(rois)
        if self.data_format == "channels_first":
            features = _args.to_channels_last(features)
        offsets, mask = self._hooked(features, *self.offsets_and_mask(features, rois),
                                     rois=rois)
        outputs = self._pool(features, rois, offsets, mask)
        if self.data_format == "channels_first":
            outputs = _args.to_channels_first(outputs)
        return outputs

    def compute_output_shape(self, features_shape, rois_shape=None):
        features = _shape_list(features_shape)
        rois = _shape_list(rois_shape) if rois_shape is not None else None
        channels = features[self._channel_axis] if len(features) == 4 else None
        count = rois[0] if rois else None
        oh, ow = self.output_size
        if self.data_format == "channels_last":
            return (count, oh, ow, channels)
        return (count, channels, oh, ow)

    def get_config(self):
        framework = self._framework
        config = super().get_config()
        config.update(
            output_size=_plain(self.output_size),
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            gamma=self.gamma,
            aligned=self.aligned,
            modulated=self.modulated,
            hidden_units=self.hidden_units,
            data_format=self.data_format,
            offset_lr_multiplier=self.offset_lr_multiplier,
            hidden_initializer=framework.initializers.serialize(self.hidden_initializer),
            kernel_regularizer=framework.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=framework.regularizers.serialize(self.bias_regularizer),
        )
        return config
