"""Configs of the deformable Mask R-CNN: Model Garden's `MaskRCNN` config plus a variant.

`DcnMaskRCNN.variant` picks the ablation rows of the paper's Table 1:

* `regular`: plain ResNet (no deformable stage) and RoIAlign (the deformable
  rows' pooling without offsets: same samples per bin, same half-pixel shift);
* `dcnv1`: deformable (unmodulated) 3x3 convolutions in conv5 and unmodulated
  deformable RoI pooling (Dai et al. 2017);
* `dcnv2`: modulated deformable convolutions in conv3-conv5 and modulated
  deformable RoI pooling (the paper, without feature mimicking);
* `custom`: the backbone and aligner fields exactly as written in the config.

`resolve_variant(model_config)` returns the config with the variant's settings
written into `backbone.dcn_resnet` and the two aligners; the model factory builds from
that. Override on the command line with `--params_override=task.model.variant=dcnv1`.

`DcnMaskRCNN.mimic` configures the R-CNN feature mimicking of Section 3.3 (a
training-only branch; off by default), independently of the variant.
"""

import dataclasses
from typing import Optional

from official.modeling import hyperparams
from official.vision.configs import maskrcnn as maskrcnn_cfg

from models.configs.backbones import Backbone, DcnResNet
from models.configs.decoders import Decoder

# variant -> (deformable backbone stages, modulated convs,
#             deformable RoI pooling, modulated RoI pooling)
VARIANTS = {
    "regular": ((), False, False, False),
    "dcnv1": ((5,), False, True, False),
    "dcnv2": ((3, 4, 5), True, True, True),
}
CUSTOM = "custom"
MIMIC_ROI_TYPES = ("positive", "negative", "all")
MIMIC_REDUCTIONS = ("sum", "mean")


@dataclasses.dataclass
class DeformROIAligner(maskrcnn_cfg.ROIAligner):
    """Model Garden's RoI aligner config plus deformable RoI pooling settings.

    Attributes:
      deformable: (modulated) deformable RoI pooling; False pools plain RoIAlign with
        the same sampling (`sampling_ratio`, `aligned`), so the variants differ only
        in what deforms.
      modulated: DCNv2 per-bin modulation (sigmoid mask).
      sampling_ratio: samples per bin along each axis.
      aligned: move boxes by -0.5 feature pixel before sampling.
      gamma: scale of the predicted normalised offsets.
      hidden_units: width of the two fc layers of the offset branch.
      offset_lr_multiplier: learning-rate factor of the offset branch.
      feature_level: 0 pools each box from its FPN level; a level (5 in the
        paper's Faster R-CNN) pools every box from that one feature map, whose
        stride in image pixels is `feature_stride`.
    """
    deformable: bool = True
    modulated: bool = True
    sampling_ratio: int = 2
    aligned: bool = True
    gamma: float = 0.1
    hidden_units: int = 1024
    offset_lr_multiplier: float = 1.0
    feature_level: int = 0
    feature_stride: int = 0


@dataclasses.dataclass
class Mimic(hyperparams.Config):
    """R-CNN feature mimicking (Section 3.3, Eq. 3), used in training only.

    Attributes:
      enabled: add the R-CNN branch and its two losses to training.
      rois_per_image: RoIs sampled into Omega per image (32 in the paper).
      roi_type: which sampled RoIs are eligible: `positive` (IoU with their
        ground-truth box >= `iou_threshold`, the paper's choice), `negative` (matched
        to background) or `all`.
      iou_threshold: IoU that makes a RoI positive.
      crop_size: side of the resized image crops fed to the backbone (224).
      mimic_weight: weight of L_mimic in the total loss (0.1).
      classification_weight: weight of the R-CNN classifier's cross-entropy (0.1).
      reduction: `sum` over Omega (Eq. 3), averaged over the images of the batch,
        or `mean` over Omega.
    """
    enabled: bool = False
    rois_per_image: int = 32
    roi_type: str = "positive"
    iou_threshold: float = 0.5
    crop_size: int = 224
    mimic_weight: float = 0.1
    classification_weight: float = 0.1
    reduction: str = "sum"


@dataclasses.dataclass
class DetectionHead(maskrcnn_cfg.DetectionHead):
    """Model Garden's Fast R-CNN head config, and whether its fc layers are batch
    normalised (`fc_norm`, Model Garden's head) or not (Detectron's 2fc head)."""
    fc_norm: bool = True


@dataclasses.dataclass
class DcnMaskRCNN(maskrcnn_cfg.MaskRCNN):
    """Model Garden's `MaskRCNN` config with the deformable backbone and aligners
    and the optional R-CNN feature-mimicking branch.

    Attributes (besides Model Garden's):
      short_side, long_side: Detectron's resize, in training, evaluation and the
        exported model: the shorter image side to `short_side` pixels, the longer
        one at most `long_side` (`models.data.short_side_resize`), padded to
        `input_size`; `short_side` 0 (the default) keeps Model Garden's resize,
        which fits the image inside `input_size`.
      octave_anchor_scales: the `anchor.num_scales` anchor scales of a level are
        whole octaves apart (`models.data.octave_anchors`: the single-level RPN
        of the Faster R-CNN experiments) instead of Model Garden's fractions of
        one octave.
    """
    variant: str = "dcnv2"
    short_side: int = 0
    long_side: int = 0
    octave_anchor_scales: bool = False
    mimic: Mimic = dataclasses.field(default_factory=Mimic)
    backbone: Backbone = dataclasses.field(
        default_factory=lambda: Backbone(type="dcn_resnet", dcn_resnet=DcnResNet()))
    decoder: Decoder = dataclasses.field(default_factory=lambda: Decoder(type="fpn"))
    roi_aligner: DeformROIAligner = dataclasses.field(
        default_factory=lambda: DeformROIAligner(crop_size=7))
    mask_roi_aligner: Optional[DeformROIAligner] = dataclasses.field(
        default_factory=lambda: DeformROIAligner(crop_size=14))
    detection_head: DetectionHead = dataclasses.field(default_factory=DetectionHead)


@dataclasses.dataclass
class DcnMaskRCNNTask(maskrcnn_cfg.MaskRCNNTask):
    """Model Garden's Mask R-CNN task config whose model is a `DcnMaskRCNN`.

    Attributes:
      drop_damaged_records: read a truncated or corrupted TFRecord file of the
        training or validation data up to its first unreadable record, with a
        warning; False: refuse to start, naming the file (`models.data.record_files`).
    """
    model: DcnMaskRCNN = dataclasses.field(default_factory=DcnMaskRCNN)
    drop_damaged_records: bool = False


def resolve_variant(model_config: DcnMaskRCNN) -> DcnMaskRCNN:
    """A copy of `model_config` with `variant`'s settings applied (see module doc).

    Raises:
      ValueError: for an unknown variant, or a deformable variant whose backbone is
        not `dcn_resnet`.
    """
    _check_mimic(model_config)
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


def _check_mimic(model_config: DcnMaskRCNN):
    mimic = model_config.mimic
    if mimic.roi_type not in MIMIC_ROI_TYPES:
        raise ValueError(f"task.model.mimic.roi_type must be one of {MIMIC_ROI_TYPES}, "
                         f"got {mimic.roi_type!r}")
    if mimic.reduction not in MIMIC_REDUCTIONS:
        raise ValueError(f"task.model.mimic.reduction must be one of {MIMIC_REDUCTIONS}, "
                         f"got {mimic.reduction!r}")
    if mimic.rois_per_image < 1 or mimic.crop_size < 1:
        raise ValueError("task.model.mimic.rois_per_image and crop_size must be positive, "
                         f"got {mimic.rois_per_image} and {mimic.crop_size}")
    if model_config.roi_aligner.feature_level:
        # Every RoI is pooled from one map: the crop must cover whole cells of it.
        stride, what = model_config.roi_aligner.feature_stride, "the pooled map's stride"
    else:
        # The FPN's top-down path merges the backbone levels, up to level 5 (stride 32).
        stride, what = 2 ** min(model_config.max_level, 5), "the FPN's coarsest merged stride"
    if mimic.enabled and mimic.crop_size % stride:
        raise ValueError(f"task.model.mimic.crop_size must be a multiple of {stride} "
                         f"({what}), got {mimic.crop_size}")


def describe(model_config: DcnMaskRCNN) -> str:
    """One line naming what a (resolved) config builds, for logs and tables."""
    resolved = resolve_variant(model_config)
    backbone = resolved.backbone
    if backbone.type == "dcn_resnet":
        cfg = backbone.dcn_resnet
        stages = ",".join(f"conv{s}" for s in cfg.deformable_stages) or "none"
        conv = f"{'modulated ' if cfg.modulated and cfg.deformable_stages else ''}" \
               f"deformable stages: {stages}"
        name = f"ResNet-{cfg.model_id}" + (
            f" (conv5 at stride {cfg.output_stride})" if cfg.output_stride != 32 else "")
    else:
        conv, name = "regular convs", f"{backbone.type}"
    pool = roi_pooling_name(resolved)
    mimic = ", R-CNN feature mimicking" if resolved.mimic.enabled else ""
    return f"{resolved.variant}: {name}, {conv}, {pool}{mimic}"


def roi_pooling_name(model_config: DcnMaskRCNN) -> str:
    """The RoI pooling of a model: "modulated deformable RoI pooling", "deformable RoI
    pooling" or "RoIAlign"."""
    aligner = resolve_variant(model_config).roi_aligner
    if aligner.deformable:
        return ("modulated " if aligner.modulated else "") + "deformable RoI pooling"
    return "RoIAlign"


__all__ = ["CUSTOM", "VARIANTS", "DcnMaskRCNN", "DcnMaskRCNNTask", "DeformROIAligner",
           "Mimic", "describe", "resolve_variant", "roi_pooling_name"]
