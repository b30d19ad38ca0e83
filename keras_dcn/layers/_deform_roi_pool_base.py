"""`DeformRoIPoolBase`: the body of `DeformRoIPool`, shared by Keras 3 and tf_keras.

It holds argument handling, `build` (through `add_weight`), `call` (RoIAlign, the fully
connected offset / mask branch, then `deform_roi_pool`), `compute_output_shape` and
`get_config`. A concrete layer mixes it into a framework's `Layer` class and names the
framework in `_framework` (see `_framework.Framework`, which also gives the array
namespace and the op of the backend in use).
"""

import tensorflow as tf

from keras_dcn.layers import _gradient_scale
from keras_dcn.layers._framework import plain, shape_list
from keras_dcn.layers._sampling_hook import SamplingHookMixin
from keras_dcn.ops import _args


class DeformRoIPoolBase(SamplingHookMixin):
    """Framework-neutral body of `DeformRoIPool`; see `keras_dcn.layers.DeformRoIPool`."""

    _framework = None  # set by the concrete class

    def __init__(self, output_size=7, spatial_scale=1.0, sampling_ratio=2, gamma=0.1,
                 aligned=True, modulated=True, hidden_units=1024, data_format=None,
                 offset_lr_multiplier=1.0, hidden_initializer=None,
                 kernel_regularizer=None, bias_regularizer=None, implementation="auto",
                 **kwargs):
        framework = self._framework
        if kwargs.get("name") is None:  # rather than Keras' "deform_ro_i_pool"
            kwargs["name"] = framework.unique_name("deform_roi_pool")
        super().__init__(**kwargs)
        self.implementation = framework.implementation(implementation)
        self.supports_jit = framework.supports_jit(self.implementation)
        self.output_size = _args.positive_pair(plain(output_size), "output_size")
        self.spatial_scale = _args.finite_float(spatial_scale, "spatial_scale", positive=True)
        self.sampling_ratio = _args.integer(sampling_ratio, "sampling_ratio")
        self.gamma = _args.finite_float(gamma, "gamma")
        self.aligned = bool(aligned)
        self.modulated = bool(modulated)
        self.hidden_units = _args.positive_int(hidden_units, "hidden_units")
        self.data_format = framework.data_format(data_format)
        self.offset_lr_multiplier = _gradient_scale.lr_multiplier(offset_lr_multiplier)
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
        shape = shape_list(features_shape)
        if len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects 4-D features, got shape {tuple(shape)}")
        channels = shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the features of {type(self).__name__} must be "
                f"known, got shape {tuple(shape)}")
        if rois_shape is not None:
            rois = shape_list(rois_shape)
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
        xp = self._framework.xp
        value = xp.cast(xp.convert_to_tensor(variable), self.compute_dtype)
        return _gradient_scale.scale_gradient(xp, value, self.offset_lr_multiplier)

    def _pool(self, features, rois, offsets=None, mask=None):
        return self._framework.ops.deform_roi_pool(
            features, rois, offsets=offsets, mask=mask, output_size=self.output_size,
            spatial_scale=self.spatial_scale, sampling_ratio=self.sampling_ratio,
            gamma=self.gamma, aligned=self.aligned, implementation=self.implementation)

    def offsets_and_mask(self, features, rois):
        """The branch's `(offsets, mask)` for channels_last `features` `[N, H, W, C]`.

        offsets: `[R, oh, ow, 2]` as `(dy, dx)` in units of the RoI height / width;
        mask: `[R, oh, ow, 1]` after the sigmoid, or None when not modulated.
        """
        return self.offsets_and_mask_of_pooled(self._pool(features, rois))

    def offsets_and_mask_of_pooled(self, pooled):
        """The branch's `(offsets, mask)` from plain RoIAlign features `[R, oh, ow, C]`
        (`deform_roi_pool` without offsets, channels_last), as `offsets_and_mask` gives
        them. The layer must be built."""
        xp = self._framework.xp
        oh, ow = self.output_size
        hidden = xp.reshape(pooled, (-1, self._bins * pooled.shape[-1]))
        for index in (1, 2):
            hidden = xp.relu(
                xp.matmul(hidden, self._read(getattr(self, f"hidden{index}_kernel")))
                + self._read(getattr(self, f"hidden{index}_bias")))
        branch = (xp.matmul(hidden, self._read(self.offset_kernel))
                  + self._read(self.offset_bias))
        offsets = xp.reshape(branch[:, :2 * self._bins], (-1, oh, ow, 2))
        mask = None
        if self.modulated:
            mask = xp.sigmoid(xp.reshape(branch[:, 2 * self._bins:], (-1, oh, ow, 1)))
        return offsets, mask

    def pool_deformed(self, features, rois, offsets, mask):
        """`[R, oh, ow, C]`: channels_last `features` pooled at `rois` with the branch's
        `offsets` and `mask` (`offsets_and_mask`), after the sampling hook."""
        offsets, mask = self._hooked(features, offsets, mask, rois=rois)
        return self._pool(features, rois, offsets, mask)

    def call(self, features, rois):
        return self._forward(features, rois)

    @tf.autograph.experimental.do_not_convert
    def _forward(self, features, rois):
        xp = self._framework.xp
        features = xp.cast(xp.convert_to_tensor(features), self.compute_dtype)
        rois = xp.convert_to_tensor(rois)
        if self.data_format == "channels_first":
            features = xp.transpose(features, (0, 2, 3, 1))
        outputs = self.pool_deformed(features, rois,
                                     *self.offsets_and_mask(features, rois))
        if self.data_format == "channels_first":
            outputs = xp.transpose(outputs, (0, 3, 1, 2))
        return outputs

    def compute_output_shape(self, features_shape, rois_shape=None):
        features = shape_list(features_shape)
        rois = shape_list(rois_shape) if rois_shape is not None else None
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
            output_size=plain(self.output_size),
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            gamma=self.gamma,
            aligned=self.aligned,
            implementation=self.implementation,
            modulated=self.modulated,
            hidden_units=self.hidden_units,
            data_format=self.data_format,
            offset_lr_multiplier=self.offset_lr_multiplier,
            hidden_initializer=framework.initializers.serialize(self.hidden_initializer),
            kernel_regularizer=framework.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=framework.regularizers.serialize(self.bias_regularizer),
        )
        return config
