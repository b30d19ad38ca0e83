"""Binds the shared layer logic to Keras 3, on whichever backend Keras runs."""

import keras

from keras_dcn.layers._framework import Framework

KERAS = Framework(
    name="keras",
    initializers=keras.initializers,
    regularizers=keras.regularizers,
    constraints=keras.constraints,
    activations=keras.activations,
    input_spec=keras.layers.InputSpec,
    get_uid=keras.backend.get_uid,
    image_data_format=keras.config.image_data_format,
    backend=lambda: keras.backend.backend(),
)
