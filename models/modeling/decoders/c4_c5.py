"""The feature maps of the paper's Faster R-CNN: conv4 for the RPN, conv5 for RoI pooling.

The Faster R-CNN of Section 2.2 has no FPN. Its backbone keeps conv5 at stride 16
(`DeformableResNet(output_stride=16)`); the RPN runs on conv4 and the Fast R-CNN head
pools its RoIs from conv5. `C4C5Decoder` hands Model Garden's R-CNN those two maps
under the keys it reads them by: `'4'` (the RPN, with `min_level = max_level = 4`)
and `'5'` (the RoI aligner, with `DeformROIAligner.feature_level` 5). A 1x1
convolution and ReLU reduce conv5's channels to `num_filters` first (256 in the
authors' code; `num_filters=0` passes conv5 through unchanged).

Input: Model Garden's backbone endpoints `{'2': ..., '4': [B, H/16, W/16, C4],
'5': [B, H/16, W/16, C5]}`; output `{'4': [B, H/16, W/16, C4], '5': [B, H/16, W/16, F]}`.
"""

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.vision.modeling.decoders import factory

PACKAGE = "keras_dcn_models"
RPN_LEVEL = "4"
POOLED_LEVEL = "5"


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class C4C5Decoder(tf_keras.layers.Layer):
    """`{'4': conv4, '5': ReLU(1x1 conv(conv5))}` from the backbone's endpoints.

    Args:
      input_specs: the backbone's `{level: TensorShape}` (`backbone.output_specs`);
        it must hold levels 4 and 5 at the same resolution.
      num_filters: channels of the reduced conv5; 0 keeps conv5 as it is.
      kernel_regularizer: regularizer of the 1x1 convolution's kernel.
    """

    def __init__(self, input_specs: Mapping[str, tf.TensorShape], num_filters: int = 256,
                 kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
                 **kwargs):
        super().__init__(**kwargs)
        specs = {str(level): tf.TensorShape(shape) for level, shape in input_specs.items()}
        missing = {RPN_LEVEL, POOLED_LEVEL} - set(specs)
        if missing:
            raise ValueError(f"C4C5Decoder needs backbone levels 4 and 5, got {sorted(specs)}")
        conv4, conv5 = specs[RPN_LEVEL], specs[POOLED_LEVEL]
        if conv4[1:3] != conv5[1:3] and None not in (*conv4[1:3], *conv5[1:3]):
            raise ValueError(
                "C4C5Decoder needs conv5 at conv4's resolution (a backbone with "
                f"output_stride 16), got conv4 {conv4} and conv5 {conv5}")
        kernel_regularizer = tf_keras.regularizers.get(kernel_regularizer)
        if num_filters < 0:
            raise ValueError(f"num_filters must be >= 0, got {num_filters}")
        self._config_dict = {"input_specs": specs, "num_filters": int(num_filters),
                             "kernel_regularizer": kernel_regularizer}
        self._reduce = tf_keras.layers.Conv2D(
            num_filters, 1, kernel_initializer=tf_keras.initializers.VarianceScaling(),
            kernel_regularizer=kernel_regularizer, name="conv5_reduce") \
            if num_filters else None
        pooled_channels = num_filters or conv5[-1]
        self._output_specs = {RPN_LEVEL: conv4,
                              POOLED_LEVEL: conv5[:-1].concatenate([pooled_channels])}

    def call(self, features: Mapping[str, tf.Tensor]) -> Mapping[str, tf.Tensor]:
        """`{'4': conv4, '5': conv5 reduced}` of the backbone's `features`."""
        conv5 = features[POOLED_LEVEL]
        if self._reduce is not None:
            conv5 = tf.nn.relu(self._reduce(conv5))
        return {RPN_LEVEL: features[RPN_LEVEL], POOLED_LEVEL: conv5}

    @property
    def output_specs(self) -> Mapping[str, tf.TensorShape]:
        """`{level: TensorShape}` of the two outputs."""
        return self._output_specs

    def get_config(self):
        """The layer's constructor arguments."""
        config = dict(self._config_dict)
        config["input_specs"] = {level: shape.as_list()
                                 for level, shape in config["input_specs"].items()}
        config["kernel_regularizer"] = tf_keras.regularizers.serialize(
            config["kernel_regularizer"]) if config["kernel_regularizer"] else None
        return {**super().get_config(), **config}


@factory.register_decoder_builder("c4_c5")
def build_c4_c5_decoder(input_specs: Mapping[str, tf.TensorShape],
                        model_config: hyperparams.Config,
                        l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
                        **kwargs) -> C4C5Decoder:
    """Builds a `C4C5Decoder` from a model config whose `decoder.type` is `c4_c5`."""
    del kwargs
    return C4C5Decoder(input_specs=input_specs,
                       num_filters=model_config.decoder.c4_c5.num_filters,
                       kernel_regularizer=l2_regularizer)
