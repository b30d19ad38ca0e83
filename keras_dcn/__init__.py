"""keras-dcn: Deformable ConvNets v2 (modulated deformable convolution and RoI
pooling) as TensorFlow ops and Keras layers."""

from keras_dcn import ops
from keras_dcn import layers

__version__ = "0.1.0"
