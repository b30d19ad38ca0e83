"""Config of the deformable ResNet backbone and a backbone oneof that offers it.

`Backbone` is Model Garden's backbone oneof (`official.vision.configs.backbones`)
with one more choice, `dcn_resnet`, so a config selects it with
`backbone.type: dcn_resnet` and Model Garden's `build_backbone` finds the builder
registered under that name.
"""

import dataclasses
from typing import List

from official.vision.configs import backbones


@dataclasses.dataclass
class DcnResNet(backbones.ResNet):
    """Model Garden's ResNet config plus the deformable-convolution settings.

    Attributes:
      deformable_stages: stages (2 = conv2 ... 5 = conv5) whose 3x3 convolutions are
        deformable; [] gives the plain ResNet.
      modulated: DCNv2 modulation (True) or DCNv1 offsets only (False).
      deformable_groups: offset groups of each deformable convolution.
      offset_lr_multiplier: learning-rate factor of the offset / mask branches.
      freeze_at: the stem (1) or the stem and stages up to this one (2 = conv2 ...)
        are not trained (Detectron's FREEZE_AT); 0 trains every layer. With Model
        Garden's `bn_trainable` False as well, every batch normalisation keeps its
        statistics and affine parameters (Detectron's frozen BN).
      output_stride: 32, or 16 for conv5 at stride 16: its first block does not
        downsample and its 3x3 convolutions are dilated by 2 (the paper's Faster
        R-CNN); needs bottleneck blocks (ResNet-50 and deeper).
      cardinality, width_per_group: ResNeXt blocks: the 3x3 convolutions in
        `cardinality` groups, `width_per_group` channels a group in conv2 (doubling
        with each stage); 1 and 64 give ResNet, 64 and 4 ResNeXt-101 64x4d (with
        `model_id` 101; bottleneck blocks only).
    """
    model_id: int = 50
    deformable_stages: List[int] = dataclasses.field(default_factory=lambda: [3, 4, 5])
    modulated: bool = True
    deformable_groups: int = 1
    offset_lr_multiplier: float = 0.1
    freeze_at: int = 0
    output_stride: int = 32
    cardinality: int = 1
    width_per_group: int = 64


@dataclasses.dataclass
class Backbone(backbones.Backbone):
    """Model Garden's backbone oneof with a `dcn_resnet` choice."""
    dcn_resnet: DcnResNet = dataclasses.field(default_factory=DcnResNet)
