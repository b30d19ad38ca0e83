"""Experiments of the deformable Mask R-CNN, registered in Model Garden's exp_factory.

* `dcn_maskrcnn_resnetfpn_coco`: COCO 2017 with the paper's settings (Section 5.1):
  ResNet-50 + FPN, images resized to a shorter side of 1000 pixels with the longer
  side at most 1333 (Detectron's rule, `models.data.short_side_resize`) and padded
  to `input_size` 1344x1344 (a multiple of the largest FPN stride), Detectron's
  normalisation (frozen BN, stem and conv2 frozen, a 2fc box head without BN),
  anchors of 5 scales (levels 2-6) and 3 aspect ratios, 2000 / 1000 proposals at
  NMS 0.7 (train / test), 256 anchors (1:1) and 512 RoIs (1:3) sampled per image,
  batch 16, SGD with momentum 0.9 and
  weight decay 1e-4, learning rate 0.02 divided by 10 after 10 and 14 of 16 epochs
  of 118k images (short linear warm-up). Backbone initialised from Model Garden's
  ImageNet ResNet-50.
* `dcn_maskrcnn_resnetfpn_coco_mimic`: the same with R-CNN feature mimicking on
  (Tables 3 and 4 of the paper).
* `dcn_maskrcnn_synthetic`: the synthetic shapes set of `models.data` (256x256,
  6 classes), ResNet-18 and slim heads (FPN / RPN 64 filters, one conv-free fc head
  of 2x256, mask head of 2x64 convs, 64 sampled RoIs and 16 masks per image) for CPU
  runs. Paths default to `data/synthetic` (see `synthetic_paths`).

Both take `task.model.variant` in {regular, dcnv1, dcnv2, custom}.
"""

import os

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import common
from official.vision.configs import decoders as mg_decoders
from official.vision.configs import maskrcnn as mg

from models.configs.backbones import Backbone, DcnResNet
from models.configs.decoders import Decoder
from models.configs.maskrcnn import (
    DcnMaskRCNN, DcnMaskRCNNTask, DeformROIAligner, DetectionHead)

COCO_EXPERIMENT = "dcn_maskrcnn_resnetfpn_coco"
COCO_MIMIC_EXPERIMENT = "dcn_maskrcnn_resnetfpn_coco_mimic"
SYNTHETIC_EXPERIMENT = "dcn_maskrcnn_synthetic"

# COCO 2017 as distributed (`coco/train2017/*.jpg`, `coco/val2017/*.jpg`,
# `coco/annotations/instances_{train,val}2017.json`), with the TFRecords that
# `python -m models.create_tfrecords --root=coco --splits=train2017,val2017` writes.
COCO_INPUT_PATH_BASE = "coco"
COCO_TRAIN_IMAGES = 118000
COCO_VAL_IMAGES = 5000
IMAGENET_RESNET50 = "gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080"

SYNTHETIC_ROOT = os.path.join("data", "synthetic")
SYNTHETIC_CLASSES = 6


def synthetic_paths(root: str = SYNTHETIC_ROOT) -> dict:
    """Where `python -m models.create_synthetic_data --out=ROOT --tfrecord_shards=N` writes."""
    return {
        "train": os.path.join(root, "tfrecords", "train-*.tfrecord"),
        "val": os.path.join(root, "tfrecords", "val-*.tfrecord"),
        "annotation_file": os.path.join(root, "annotations", "instances_val.json"),
    }


def rpn_score_weight(num_sampled_rois: int, rpn_batch_size_per_im: int) -> float:
    """RPN score loss weight that normalises the loss by the sampled anchors.

    Model Garden's `MaskRCNNTask` divides the RPN score loss by the number of sampled
    RoIs per image instead of the sampled anchors (`rpn_batch_size_per_im`); this
    weight turns that back into a mean over the sampled anchors (as in Detectron).
    """
    return num_sampled_rois / rpn_batch_size_per_im


def stepwise_sgd(base_lr: float, train_steps: int, warmup_steps: int,
                 decay_fractions=(10 / 16, 14 / 16)) -> optimization.OptimizationConfig:
    """SGD (momentum 0.9), lr `base_lr` divided by 10 at each decay fraction of the
    schedule, after a linear warm-up from `base_lr / 3`."""
    return optimization.OptimizationConfig({
        "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9}},
        "learning_rate": {
            "type": "stepwise",
            "stepwise": {
                "boundaries": [int(train_steps * f) for f in decay_fractions],
                "values": [base_lr * 0.1 ** i for i in range(len(decay_fractions) + 1)],
            },
        },
        "warmup": {
            "type": "linear",
            "linear": {"warmup_steps": warmup_steps,
                       "warmup_learning_rate": base_lr / 3},
        },
    })


@exp_factory.register_config_factory(COCO_EXPERIMENT)
def dcn_maskrcnn_resnetfpn_coco() -> cfg.ExperimentConfig:
    """COCO instance segmentation with the paper's DCNv2 Mask R-CNN settings."""
    batch_size = 16
    eval_batch_size = 8
    steps_per_epoch = COCO_TRAIN_IMAGES // batch_size
    train_steps = 16 * steps_per_epoch
    model = DcnMaskRCNN(
        variant="dcnv2",
        num_classes=91,
        input_size=[1344, 1344, 3],
        short_side=1000,
        long_side=1333,
        min_level=2,
        max_level=6,
        anchor=mg.Anchor(num_scales=1, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=8.0),
        # Detectron's normalisation: frozen BN, frozen stem and conv2, BN-free 2fc head.
        backbone=Backbone(type="dcn_resnet", dcn_resnet=DcnResNet(
            model_id=50, bn_trainable=False, freeze_at=2)),
        decoder=Decoder(type="fpn", fpn=mg_decoders.FPN(num_filters=256)),
        detection_head=DetectionHead(num_convs=0, num_fcs=2, fc_dims=1024, fc_norm=False),
        roi_generator=mg.ROIGenerator(
            pre_nms_top_k=2000, nms_iou_threshold=0.7, num_proposals=2000,
            test_pre_nms_top_k=1000, test_nms_iou_threshold=0.7, test_num_proposals=1000),
        roi_sampler=mg.ROISampler(num_sampled_rois=512, foreground_fraction=0.25),
        roi_aligner=DeformROIAligner(crop_size=7, hidden_units=1024),
        mask_roi_aligner=DeformROIAligner(crop_size=14, hidden_units=1024),
        include_mask=True)
    return cfg.ExperimentConfig(
        task=DcnMaskRCNNTask(
            init_checkpoint=IMAGENET_RESNET50,
            init_checkpoint_modules="backbone",
            annotation_file=os.path.join(COCO_INPUT_PATH_BASE, "annotations",
                                         "instances_val2017.json"),
            model=model,
            losses=mg.Losses(l2_weight_decay=1e-4,
                             rpn_score_weight=rpn_score_weight(512, 256)),
            train_data=mg.DataConfig(
                input_path=os.path.join(COCO_INPUT_PATH_BASE, "tfrecords",
                                        "train2017-*.tfrecord"),
                is_training=True,
                global_batch_size=batch_size,
                dtype="float32",
                parser=mg.Parser(aug_rand_hflip=True, rpn_batch_size_per_im=256,
                                 rpn_fg_fraction=0.5)),
            validation_data=mg.DataConfig(
                input_path=os.path.join(COCO_INPUT_PATH_BASE, "tfrecords",
                                        "val2017-*.tfrecord"),
                is_training=False,
                global_batch_size=eval_batch_size,
                dtype="float32",
                drop_remainder=False)),
        trainer=cfg.TrainerConfig(
            train_steps=train_steps,
            validation_steps=COCO_VAL_IMAGES // eval_batch_size,
            validation_interval=steps_per_epoch,
            steps_per_loop=500,
            summary_interval=500,
            checkpoint_interval=steps_per_epoch,
            optimizer_config=stepwise_sgd(0.02, train_steps, warmup_steps=500)),
        restrictions=[
            "task.train_data.is_training != None",
            "task.validation_data.is_training != None",
        ])


@exp_factory.register_config_factory(COCO_MIMIC_EXPERIMENT)
def dcn_maskrcnn_resnetfpn_coco_mimic() -> cfg.ExperimentConfig:
    """`dcn_maskrcnn_resnetfpn_coco` with R-CNN feature mimicking (Section 3.3; the
    `Mimic` defaults: up to 32 positive RPN proposals an image, 224-pixel crops, both
    losses weighted 0.1): Table 3's mimicking rows (`task.model.variant` regular or
    dcnv2, `task.model.mimic.roi_type` positive / negative / all) and Table 4's
    DCNv2 entries."""
    params = dcn_maskrcnn_resnetfpn_coco()
    params.task.model.mimic.enabled = True
    return params


@exp_factory.register_config_factory(SYNTHETIC_EXPERIMENT)
def dcn_maskrcnn_synthetic() -> cfg.ExperimentConfig:
    """Synthetic shapes, ResNet-18 at 256x256 with slim heads (CPU sized)."""
    batch_size = 4
    train_steps = 2000
    paths = synthetic_paths()
    model = DcnMaskRCNN(
        variant="dcnv2",
        num_classes=SYNTHETIC_CLASSES + 1,  # + background
        input_size=[256, 256, 3],
        min_level=2,
        max_level=5,
        # Anchors of 16 ... 128 pixels: objects span about 6 to 140 pixels.
        anchor=mg.Anchor(num_scales=1, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=4.0),
        backbone=Backbone(type="dcn_resnet", dcn_resnet=DcnResNet(model_id=18)),
        decoder=Decoder(type="fpn", fpn=mg_decoders.FPN(num_filters=64)),
        rpn_head=mg.RPNHead(num_convs=1, num_filters=64),
        detection_head=DetectionHead(num_convs=0, num_filters=64, num_fcs=2,
                                        fc_dims=256),
        roi_generator=mg.ROIGenerator(
            pre_nms_top_k=1000, num_proposals=256, test_pre_nms_top_k=500,
            test_num_proposals=100),
        roi_sampler=mg.ROISampler(num_sampled_rois=64),
        roi_aligner=DeformROIAligner(crop_size=7, hidden_units=256),
        mask_head=mg.MaskHead(num_convs=2, num_filters=64),
        mask_sampler=mg.MaskSampler(num_sampled_masks=16),
        mask_roi_aligner=DeformROIAligner(crop_size=14, hidden_units=256),
        detection_generator=mg.DetectionGenerator(pre_nms_top_k=1000,
                                                  max_num_detections=50),
        norm_activation=common.NormActivation(
            norm_momentum=0.9, norm_epsilon=1e-3, use_sync_bn=False))
    return cfg.ExperimentConfig(
        task=DcnMaskRCNNTask(
            annotation_file=paths["annotation_file"],
            model=model,
            losses=mg.Losses(l2_weight_decay=1e-4,
                             rpn_score_weight=rpn_score_weight(64, 256)),
            train_data=mg.DataConfig(
                input_path=paths["train"],
                is_training=True,
                global_batch_size=batch_size,
                dtype="float32",
                shuffle_buffer_size=1000,
                parser=mg.Parser(aug_rand_hflip=True, aug_scale_min=0.8,
                                 aug_scale_max=1.25, max_num_instances=16)),
            validation_data=mg.DataConfig(
                input_path=paths["val"],
                is_training=False,
                global_batch_size=batch_size,
                dtype="float32",
                drop_remainder=False,
                parser=mg.Parser(max_num_instances=16))),
        trainer=cfg.TrainerConfig(
            train_steps=train_steps,
            validation_steps=-1,
            validation_interval=train_steps,
            steps_per_loop=50,
            summary_interval=50,
            checkpoint_interval=250,
            max_to_keep=3,
            optimizer_config=stepwise_sgd(0.02, train_steps, warmup_steps=100)),
        restrictions=[
            "task.train_data.is_training != None",
            "task.validation_data.is_training != None",
        ])
