"""Config of the Faster R-CNN's decoder and a decoder oneof that offers it.

`Decoder` is Model Garden's decoder oneof (`official.vision.configs.decoders`) with one
more choice, `c4_c5` (`models.modeling.decoders.c4_c5`): conv4 for the RPN and
conv5, reduced by a 1x1 convolution, for RoI pooling, without an FPN.
"""

import dataclasses

from official.modeling import hyperparams
from official.vision.configs import decoders


@dataclasses.dataclass
class C4C5(hyperparams.Config):
    """`num_filters`: channels conv5 is reduced to before RoI pooling (0: none)."""
    num_filters: int = 256


@dataclasses.dataclass
class Decoder(decoders.Decoder):
    """Model Garden's decoder oneof with a `c4_c5` choice."""
    c4_c5: C4C5 = dataclasses.field(default_factory=C4C5)
