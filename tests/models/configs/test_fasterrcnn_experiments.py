"""models.configs.fasterrcnn_experiments: the paper's Faster R-CNN (Section 2.2) as
registered experiments (their registration and variants: test_experiments.py): its
architecture against the paper's text, the Section 5.1 settings it shares with the
Mask R-CNN, and a training step of every variant, with and without mimicking, through
the real input pipeline (the COCO experiments' steps: test_coco_experiment_steps.py)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory, task_factory
from official.modeling import hyperparams
from official.vision.ops import anchor as anchor_module

from models.configs import experiments
from models.configs import fasterrcnn_experiments as frcnn
from models.configs import maskrcnn as config
from models.data.octave_anchors import OctaveAnchorGenerator
from models.modeling.backbones.dcn_resnet import DeformableResNet
from models.modeling.decoders.c4_c5 import C4C5Decoder

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
    # The R-CNN branch's 224x224 crops give 14x14 conv5 maps (Section 3.3).
    backbone = DeformableResNet(
        **{k: v for k, v in params.task.model.backbone.dcn_resnet.as_dict().items()
           if k in ("model_id", "deformable_stages", "output_stride")},
        input_specs=tf_keras.layers.InputSpec(shape=[None, None, None, 3]))
    assert backbone(tf.zeros([1, 224, 224, 3]))["5"].shape == (1, 14, 14, 2048)
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


def test_model_makes_the_octave_anchors_the_input_pipeline_makes(tiny_faster_rcnn_overrides):
    """Called without anchors (as on a plain image), the Faster R-CNN detects what it
    detects with the octave-spaced anchors the parser and serving module give it."""
    params = exp_factory.get_exp_config(frcnn.FASTER_RCNN_SYNTHETIC_EXPERIMENT)
    params = hyperparams.override_params_dict(
        params, tiny_faster_rcnn_overrides("dcnv2"), is_strict=True)
    model = task_factory.get_task(params.task).build_model()
    anchor = params.task.model.anchor
    boxes = OctaveAnchorGenerator(4, 4, anchor.num_scales, anchor.aspect_ratios,
                                  anchor.anchor_size)((64, 64))
    garden = anchor_module.build_anchor_generator(
        4, 4, anchor.num_scales, anchor.aspect_ratios, anchor.anchor_size)((64, 64))
    images = tf.random.stateless_uniform([2, 64, 64, 3], seed=[5, 6])
    shape = tf.constant([[64.0, 64.0]] * 2)

    def detect(anchor_boxes=None):
        if anchor_boxes is not None:
            anchor_boxes = {k: tf.tile(v[None], [2, 1, 1, 1]) for k, v in anchor_boxes.items()}
        return model(images, image_shape=shape, training=False, anchor_boxes=anchor_boxes)

    made, given = detect(), detect(boxes)
    for key in ("detection_boxes", "detection_scores", "detection_classes"):
        np.testing.assert_array_equal(made[key].numpy(), given[key].numpy(), err_msg=key)
    # Model Garden's anchors (scales within one octave) detect something else.
    assert not np.array_equal(detect(garden)["detection_boxes"].numpy(),
                              given["detection_boxes"].numpy())
