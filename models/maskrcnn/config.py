"""Configs of the deformable Mask R-CNN: Model Garden's `MaskRCNN` config plus a variant.

`DcnMaskRCNN.variant` picks the ablation rows of the paper's Table 1:

* `regular`: plain ResNet (no deformable stage) and Model Garden's RoIAlign;
* `dcnv1`: deformable (unmodulated) 3x3 convolutions in conv5 and unmodulated
  deformable RoI pooling (Dai et al. 2017);
* `dcnv2`: modulated deformable convolutions in conv3-conv5 and modulated
  deformable RoI pooling (the paper, without feature mimicking);
* `custom`: the backbone and aligner fields exactly as written in the config.

`resolve_variant(model_config)` returns the config with the variant's settings
written into `backbone.dcn_resnet` and the two aligners; the model factory builds from
that. Override on the command line with `--params_override=task.model.variant=dcnv1`.
"""

import dataclasses
from typing import Optional

from official.vision.configs import maskrcnn as maskrcnn_cfg

from models.backbones.config import Backbone, DcnResNet

# variant -> (deformable backbone stages, modulated convs,
#             deformable RoI pooling, modulated RoI pooling)
VARIANTS = {
    "regular": ((), False, False, False),
    "dcnv1": ((5,), False, True, False),
    "dcnv2": ((3, 4, 5), True, True, True),
}
CUSTOM = "custom"


@dataclasses.dataclass
class DeformROIAligner(maskrcnn_cfg.ROIAligner):
  """Model Garden's RoI aligner config plus deformable RoI pooling settings.

  Attributes:
    deformable: (modulated) deformable RoI pooling; False gives Model Garden's
      `MultilevelROIAligner`.
    modulated: DCNv2 per-bin modulation (sigmoid mask).
    sampling_ratio: samples per bin along each axis.
    aligned: move boxes by -0.5 feature pixel before sampling.
    gamma: scale of the predicted normalised offsets.
    hidden_units: width of the two fc layers of the offset branch.
    offset_lr_multiplier: learning-rate factor of the offset branch.
  """
  deformable: bool = True
  modulated: bool = True
  sampling_ratio: int = 2
  aligned: bool = True
  gamma: float = 0.1
  hidden_units: int = 1024
  offset_lr_multiplier: float = 1.0


@dataclasses.dataclass
class DcnMaskRCNN(maskrcnn_cfg.MaskRCNN):
  """Model Garden's `MaskRCNN` config with the deformable backbone and aligners."""
  variant: str = "dcnv2"
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(type="dcn_resnet", dcn_resnet=DcnResNet()))
  roi_aligner: DeformROIAligner = dataclasses.field(
      default_factory=lambda: DeformROIAligner(crop_size=7))
  mask_roi_aligner: Optional[DeformROIAligner] = dataclasses.field(
      default_factory=lambda: DeformROIAligner(crop_size=14))


@dataclasses.dataclass
class DcnMaskRCNNTask(maskrcnn_cfg.MaskRCNNTask):
  """Model Garden's Mask R-CNN task config whose model is a `DcnMaskRCNN`."""
  model: DcnMaskRCNN = dataclasses.field(default_factory=DcnMaskRCNN)


def resolve_variant(model_config: DcnMaskRCNN) -> DcnMaskRCNN:
  """A copy of `model_config` with `variant`'s settings applied (see module doc).

  Raises:
    ValueError: for an unknown variant, or a deformable variant whose backbone is
      not `dcn_resnet`.
  """
  variant = model_config.variant
  if variant == CUSTOM:
    return model_config.replace()
  if variant not in VARIANTS:
    raise ValueError(
        f"task.model.variant must be one of {sorted(VARIANTS) + [CUSTOM]}, got {variant!r}")
  stages, modulated, pooling, pool_modulated = VARIANTS[variant]
  override = {}
  if model_config.backbone.type == "dcn_resnet":
    override["backbone"] = {"dcn_resnet": {"deformable_stages": list(stages),
                                           "modulated": modulated}}
  elif stages:
    raise ValueError(
        f"variant {variant!r} needs backbone.type 'dcn_resnet', "
        f"got {model_config.backbone.type!r}")
  pooling_override = {"deformable": pooling, "modulated": pool_modulated}
  override["roi_aligner"] = pooling_override
  if model_config.include_mask and model_config.mask_roi_aligner is not None:
    override["mask_roi_aligner"] = pooling_override
  return model_config.replace(**override)


def describe(model_config: DcnMaskRCNN) -> str:
  """One line naming what a (resolved) config builds, for logs and tables."""
  resolved = resolve_variant(model_config)
  backbone = resolved.backbone
  if backbone.type == "dcn_resnet":
    cfg = backbone.dcn_resnet
    stages = ",".join(f"conv{s}" for s in cfg.deformable_stages) or "none"
    conv = f"{'modulated ' if cfg.modulated and cfg.deformable_stages else ''}" \
           f"deformable stages: {stages}"
    name = f"ResNet-{cfg.model_id}"
  else:
    conv, name = "regular convs", f"{backbone.type}"
  aligner = resolved.roi_aligner
  pool = ("modulated deformable RoI pooling" if aligner.deformable and aligner.modulated
          else "deformable RoI pooling" if aligner.deformable else "RoIAlign")
  return f"{resolved.variant}: {name}, {conv}, {pool}"


__all__ = ["CUSTOM", "VARIANTS", "DcnMaskRCNN", "DcnMaskRCNNTask", "DeformROIAligner",
           "describe", "resolve_variant"]
