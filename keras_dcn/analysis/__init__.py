"""Spatial-support analysis of Section 2 of the paper: effective receptive fields,
effective sampling / bin locations and error-bounded saliency regions of a node.

```python
from keras_dcn import analysis

node = analysis.spatial_node(model, "deform_conv2d_2", (7, 9))    # [C] at one position
erf = analysis.effective_receptive_field(node, image)             # [H, W] in [0, 1]
locations = analysis.effective_sampling_locations(
    node, image, analysis.deformable_layers(model))               # per layer call
region = analysis.error_bounded_saliency_region(node, image)      # region.mask [H, W]
```

Definitions are in the docstrings of `receptive_field`, `sampling_locations` and
`saliency`; nodes in `nodes`; where the deformable layers read (sampling points, RoI
boxes, bin centres) in `geometry`. Everything runs eagerly on one image.
"""

from keras_dcn.analysis.nodes import deformable_layers
from keras_dcn.analysis.nodes import image_batch
from keras_dcn.analysis.nodes import scalar_response
from keras_dcn.analysis.nodes import spatial_node
from keras_dcn.analysis.receptive_field import effective_receptive_field
from keras_dcn.analysis.saliency import SaliencyRegion
from keras_dcn.analysis.saliency import error_bounded_saliency_region
from keras_dcn.analysis.sampling_locations import SamplingLocations
from keras_dcn.analysis.sampling_locations import effective_sampling_locations
from keras_dcn.analysis.sampling_locations import sampling_hook

__all__ = [
    "SaliencyRegion", "SamplingLocations", "deformable_layers",
    "effective_receptive_field", "effective_sampling_locations",
    "error_bounded_saliency_region", "image_batch", "sampling_hook", "scalar_response",
    "spatial_node",
]
