"""keras-dcn: Deformable ConvNets v2 (modulated deformable convolution and RoI
pooling) as TensorFlow ops and Keras layers."""

# The package version: pyproject.toml reads it from here, without importing the package.
__version__ = "0.1.0"

from keras_dcn import ops
from keras_dcn import layers
