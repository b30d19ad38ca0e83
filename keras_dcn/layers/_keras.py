"""Binds the shared layer logic to Keras 3 (TensorFlow backend only)."""

import keras

from keras_dcn.layers._framework import Framework


def require_tensorflow_backend(layer_name):
    """Raises RuntimeError unless Keras runs on its TensorFlow backend."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"keras_dcn.layers.{layer_name} needs Keras' TensorFlow backend (its ops are "
            f"TensorFlow custom ops), but Keras runs on the {backend!r} backend. Set the "
            "environment variable KERAS_BACKEND=tensorflow before importing keras.")


KERAS = Framework(
    name="keras",
    initializers=keras.initializers,
    regularizers=keras.regularizers,
    constraints=keras.constraints,
    activations=keras.activations,
    input_spec=keras.layers.InputSpec,
    get_uid=keras.backend.get_uid,
    image_data_format=keras.config.image_data_format,
    check=require_tensorflow_backend,
)
