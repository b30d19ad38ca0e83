"""models.configs.fasterrcnn_experiments: the paper's Faster R-CNN (Section 2.2) as
registered experiments: its architecture against the paper's text, the Section 5.1
settings it shares with the Mask R-CNN, and a training step of every variant, with and
without mimicking, through the real input pipeline."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory, task_factory
from official.modeling import hyperparams

from models.configs import experiments
from models.configs import fasterrcnn_experiments as frcnn
from models.configs import maskrcnn as config
from models.data.octave_anchors import OctaveAnchorGenerator
from models.modeling.decoders.c4_c5 import C4C5Decoder
from models.tasks import maskrcnn as task

EXPERIMENTS = [frcnn.FASTER_RCNN_COCO_EXPERIMENT, frcnn.FASTER_RCNN_COCO_MIMIC_EXPERIMENT,
               frcnn.FASTER_RCNN_SYNTHETIC_EXPERIMENT]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_are_registered(name):
    params = exp_factory.get_exp_config(name)
    assert isinstance(params.task, config.DcnMaskRCNNTask)
    assert params.task.model.variant == "dcnv2"
    params.validate()
    assert isinstance(task_factory.get_task(params.task), task.DcnMaskRCNNTask)
    for variant in ("regular", "dcnv1", "dcnv2"):
        overridden = hyperparams.override_params_dict(
            params, f"task.model.variant={variant}", is_strict=True)
        assert overridden.task.model.variant == variant


def test_coco_experiment_is_the_papers_faster_rcnn():
    params = exp_factory.get_exp_config(frcnn.FASTER_RCNN_COCO_EXPERIMENT)
    model = params.task.model
    # No FPN, no mask head: RPN on conv4 (stride 16), RoIs pooled from conv5, which
    # keeps stride 16.
    assert not model.include_mask
    assert (model.min_level, model.max_level) == (4, 4)
    assert model.backbone.dcn_resnet.model_id == 50
    assert model.backbone.dcn_resnet.output_stride == 16
    assert model.decoder.type == "c4_c5" and model.decoder.c4_c5.num_filters == 256
    assert (model.roi_aligner.feature_level, model.roi_aligner.feature_stride) == (5, 16)
    assert model.roi_aligner.crop_size == 7
    assert (model.detection_head.num_convs, model.detection_head.num_fcs,
            model.detection_head.fc_dims, model.detection_head.fc_norm) == (0, 2, 1024, False)
    # Anchors of 5 scales (32 ... 512 pixels) and 3 aspect ratios on conv4.
    assert model.octave_anchor_scales
    anchor = model.anchor
    boxes = OctaveAnchorGenerator(4, 4, anchor.num_scales, anchor.aspect_ratios,
                                  anchor.anchor_size)((64, 64))["4"].numpy()
    boxes = boxes[0, 0].reshape(-1, 4)
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    np.testing.assert_allclose(sorted(set(np.round(sides))), [32, 64, 128, 256, 512])
    assert len(boxes) == 15
    assert model.roi_generator.num_proposals == 2000
    assert model.roi_generator.test_num_proposals == 1000
    assert model.roi_generator.nms_iou_threshold == 0.7
    assert model.roi_generator.test_nms_iou_threshold == 0.7
    # Everything else of Section 5.1 as in the Mask R-CNN experiment.
    mask_rcnn = exp_factory.get_exp_config(experiments.COCO_EXPERIMENT)
    assert (model.short_side, model.long_side) == (1000, 1333)
    assert model.backbone.dcn_resnet.freeze_at == 2
    assert not model.backbone.dcn_resnet.bn_trainable
    assert model.roi_sampler == mask_rcnn.task.model.roi_sampler
    for part in ("train_data", "validation_data", "losses", "init_checkpoint"):
        assert getattr(params.task, part) == getattr(mask_rcnn.task, part), part
    assert params.trainer == mask_rcnn.trainer


def test_mimic_experiment_is_the_coco_experiment_with_mimicking():
    plain = exp_factory.get_exp_config(frcnn.FASTER_RCNN_COCO_EXPERIMENT).as_dict()
    mimicking = exp_factory.get_exp_config(frcnn.FASTER_RCNN_COCO_MIMIC_EXPERIMENT).as_dict()
    assert mimicking["task"]["model"]["mimic"].pop("enabled")
    assert not plain["task"]["model"]["mimic"].pop("enabled")
    assert mimicking == plain
    params = exp_factory.get_exp_config(frcnn.FASTER_RCNN_COCO_MIMIC_EXPERIMENT)
    assert "mimicking" in config.describe(params.task.model)
    # The crop must cover whole cells of the stride-16 conv5 map.
    params.task.model.mimic.crop_size = 232
    with pytest.raises(ValueError, match="multiple of 16"):
        config.resolve_variant(params.task.model)


@pytest.mark.slow
@pytest.mark.parametrize("mimic", [False, True])
@pytest.mark.parametrize("variant", ["regular", "dcnv1", "dcnv2"])
def test_every_variant_trains_a_step_through_its_input_pipeline(
        variant, mimic, tiny_faster_rcnn_overrides):
    params = exp_factory.get_exp_config(frcnn.FASTER_RCNN_SYNTHETIC_EXPERIMENT)
    params = hyperparams.override_params_dict(
        params, tiny_faster_rcnn_overrides(variant, mimic), is_strict=True)
    faster_rcnn = task_factory.get_task(params.task)
    model = faster_rcnn.build_model()
    assert isinstance(model.decoder, C4C5Decoder) and model.mask_head is None
    assert model.backbone.output_specs["5"][1:3] == model.backbone.output_specs["4"][1:3]
    images, labels = next(iter(faster_rcnn.build_inputs(params.task.train_data)))
    # The parser's anchors: one level (conv4 of a 64-pixel image), 4 scales x 3 ratios.
    assert list(labels["anchor_boxes"]) == ["4"]
    assert labels["anchor_boxes"]["4"].shape == (2, 4, 4, 48)
    metrics = faster_rcnn.build_metrics(training=True)
    before = [v.numpy() for v in model.trainable_variables]
    logs = faster_rcnn.train_step((images, labels), model, tf_keras.optimizers.SGD(0.01),
                                  metrics)
    results = {m.name: float(m.result()) for m in metrics}
    assert np.isfinite(float(logs["loss"]))
    assert results.get("mask_loss", 0.0) == 0.0  # no mask head
    assert ("mimic_loss" in results) == mimic
    changed = [not np.array_equal(b, v.numpy())
               for b, v in zip(before, model.trainable_variables)]
    assert sum(changed) > len(changed) // 2


@pytest.mark.slow
def test_coco_mimic_experiment_trains_a_step_through_its_input_pipeline(tiny_data):
    """The registered COCO experiment (ResNet-50 at stride 16, mimicking) on the tiny
    set's TFRecords, scaled to a shorter side of 96 in 128x128, without the ImageNet
    checkpoint; the R-CNN branch's 224x224 crops give 14x14 conv5 maps."""
    params = exp_factory.get_exp_config(frcnn.FASTER_RCNN_COCO_MIMIC_EXPERIMENT)
    params = hyperparams.override_params_dict(params, {"task": {
        "init_checkpoint": "",
        "annotation_file": tiny_data["annotation_file"],
        "model": {"input_size": [128, 128, 3], "short_side": 96, "long_side": 128,
                  "mimic": {"rois_per_image": 2, "roi_type": "all"}},
        "train_data": {"input_path": tiny_data["train"], "global_batch_size": 2,
                       "shuffle_buffer_size": 4},
    }}, is_strict=True)
    coco_task = task_factory.get_task(params.task)
    model = coco_task.build_model()
    crops = model.backbone(tf.zeros([1, 224, 224, 3]), training=False)
    assert crops["5"].shape == (1, 14, 14, 2048)
    images, labels = next(iter(coco_task.build_inputs(params.task.train_data)))
    metrics = coco_task.build_metrics(training=True)
    logs = coco_task.train_step((images, labels), model,
                                tf_keras.optimizers.SGD(0.01, momentum=0.9), metrics)
    results = {m.name: float(m.result()) for m in metrics}
    assert np.isfinite(float(logs["loss"])) and results["mimic_loss"] >= 0
