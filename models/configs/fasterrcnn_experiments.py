"""Experiments of the paper's Faster R-CNN (Section 2.2, Table 1), registered in Model
Garden's exp_factory.

The Faster R-CNN the paper studies has no FPN and no mask head: ResNet with conv5 at
stride 16 (its first block does not downsample; its 3x3 convolutions are dilated by
2), an RPN on conv4 with anchors of 5 scales an octave apart (32-512 pixels) and 3
aspect ratios, and a Fast R-CNN head that pools every RoI from conv5 (reduced to 256
channels by a 1x1 convolution, as in the authors' code) into 7x7 bins followed by two
fc layers of 1024. `faster_rcnn(model_config, ...)` turns a Mask R-CNN config into
that model from the same Model Garden components (`models.modeling.decoders.c4_c5`
feeds conv4 to the RPN and conv5 to the RoI aligner); `task.model.variant` picks
regular / dcnv1 / dcnv2 as for the Mask R-CNN, and in dcnv1 / dcnv2 the dilated conv5
convolutions are deformable with dilation 2.

* `dcn_fasterrcnn_resnet_coco`: COCO 2017 with the Mask R-CNN experiment's Section
  5.1 settings (shorter side 1000, Detectron's normalisation, 2k / 1k proposals at
  NMS 0.7 from the top 12k / 6k anchors, 512 RoIs and 256 anchors an image, the 16
  epoch schedule, ImageNet ResNet-50).
* `dcn_fasterrcnn_resnet_coco_mimic`: the same with R-CNN feature mimicking (Table 3's
  Faster R-CNN rows, Table 4's DCNv2 entries). The R-CNN branch's 224x224 crops give
  14x14 conv5 maps, as in the paper.
* `dcn_fasterrcnn_synthetic`: the synthetic shapes of `dcn_maskrcnn_synthetic` with
  a Faster R-CNN of CPU size: a bottleneck ResNet-50 at a quarter of the width (conv5
  at stride 16 needs bottleneck blocks), anchors of 16-128 pixels.
"""

from official.core import config_definitions as cfg
from official.core import exp_factory

from models.configs import experiments
from models.configs.maskrcnn import DcnMaskRCNN

FASTER_RCNN_COCO_EXPERIMENT = "dcn_fasterrcnn_resnet_coco"
FASTER_RCNN_COCO_MIMIC_EXPERIMENT = "dcn_fasterrcnn_resnet_coco_mimic"
FASTER_RCNN_SYNTHETIC_EXPERIMENT = "dcn_fasterrcnn_synthetic"
RPN_LEVEL = 4
POOLED_LEVEL = 5
POOLED_STRIDE = 16


def faster_rcnn(model_config: DcnMaskRCNN, *, anchor_scales: int, anchor_size: float,
                rpn_filters: int, pooled_filters: int) -> DcnMaskRCNN:
    """`model_config` made the paper's Faster R-CNN (see module doc).

    Args:
      model_config: a `DcnMaskRCNN` with a `dcn_resnet` bottleneck backbone.
      anchor_scales: anchor scales an octave apart at each position of conv4.
      anchor_size: the smallest anchor's side in units of conv4's stride (16).
      rpn_filters: channels of the RPN's 3x3 convolution.
      pooled_filters: channels conv5 is reduced to before RoI pooling (0: none).
    """
    return model_config.replace(
        include_mask=False,
        min_level=RPN_LEVEL,
        max_level=RPN_LEVEL,
        octave_anchor_scales=True,
        anchor={"num_scales": anchor_scales, "anchor_size": anchor_size},
        backbone={"dcn_resnet": {"output_stride": POOLED_STRIDE}},
        decoder={"type": "c4_c5", "c4_c5": {"num_filters": pooled_filters}},
        rpn_head={"num_convs": 1, "num_filters": rpn_filters},
        roi_aligner={"feature_level": POOLED_LEVEL, "feature_stride": POOLED_STRIDE})


@exp_factory.register_config_factory(FASTER_RCNN_COCO_EXPERIMENT)
def dcn_fasterrcnn_resnet_coco() -> cfg.ExperimentConfig:
    """COCO detection with the paper's DCNv2 Faster R-CNN (ResNet-50, no FPN)."""
    params = experiments.dcn_maskrcnn_resnetfpn_coco()
    model = faster_rcnn(params.task.model, anchor_scales=5, anchor_size=2.0,
                        rpn_filters=512, pooled_filters=256)
    params.task.model = model.replace(roi_generator={
        "pre_nms_top_k": 12000, "num_proposals": 2000,
        "test_pre_nms_top_k": 6000, "test_num_proposals": 1000})
    return params


@exp_factory.register_config_factory(FASTER_RCNN_COCO_MIMIC_EXPERIMENT)
def dcn_fasterrcnn_resnet_coco_mimic() -> cfg.ExperimentConfig:
    """`dcn_fasterrcnn_resnet_coco` with R-CNN feature mimicking (Section 3.3)."""
    params = dcn_fasterrcnn_resnet_coco()
    params.task.model.mimic.enabled = True
    return params


@exp_factory.register_config_factory(FASTER_RCNN_SYNTHETIC_EXPERIMENT)
def dcn_fasterrcnn_synthetic() -> cfg.ExperimentConfig:
    """Synthetic shapes, a quarter-width ResNet-50 Faster R-CNN at 256x256 (CPU sized)."""
    params = experiments.dcn_maskrcnn_synthetic()
    model = params.task.model.replace(
        backbone={"dcn_resnet": {"model_id": 50, "depth_multiplier": 0.25}})
    params.task.model = faster_rcnn(model, anchor_scales=4, anchor_size=1.0,
                                    rpn_filters=64, pooled_filters=64)
    return params
