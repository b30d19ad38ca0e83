"""models.configs.experiments: the experiments registered in Model Garden's exp_factory
(their task in its task_factory), the paper's COCO settings, the `variant` and
mimicking switches."""

import pytest
from official.core import exp_factory, task_factory
from official.modeling import hyperparams
from official.vision.configs import maskrcnn as mg_maskrcnn

from models.configs import experiments
from models.configs import fasterrcnn_experiments as frcnn
from models.configs import maskrcnn as config
from models.tasks import maskrcnn as task

EXPERIMENTS = [experiments.COCO_EXPERIMENT, experiments.COCO_MIMIC_EXPERIMENT,
               experiments.SYNTHETIC_EXPERIMENT, frcnn.FASTER_RCNN_COCO_EXPERIMENT,
               frcnn.FASTER_RCNN_COCO_MIMIC_EXPERIMENT, frcnn.FASTER_RCNN_SYNTHETIC_EXPERIMENT]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_are_registered(name):
    params = exp_factory.get_exp_config(name)
    assert isinstance(params.task, config.DcnMaskRCNNTask)
    assert isinstance(params.task, mg_maskrcnn.MaskRCNNTask)
    assert params.task.model.variant == "dcnv2"
    assert params.task.model.backbone.type == "dcn_resnet"
    params.validate()
    assert isinstance(task_factory.get_task(params.task), task.DcnMaskRCNNTask)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_variant_from_params_override(name):
    params = exp_factory.get_exp_config(name)
    for variant in ("regular", "dcnv1", "dcnv2"):
        overridden = hyperparams.override_params_dict(
            params, f"task.model.variant={variant}", is_strict=True)
        assert overridden.task.model.variant == variant
    params = hyperparams.override_params_dict(
        params, "task.model.variant=dcnv1", is_strict=True)
    assert "conv5" in config.describe(params.task.model)


def test_coco_experiment_follows_the_paper():
    params = exp_factory.get_exp_config(experiments.COCO_EXPERIMENT)
    model = params.task.model
    assert model.backbone.dcn_resnet.model_id == 50
    assert model.decoder.type == "fpn"
    assert (model.min_level, model.max_level) == (2, 6)  # 5 anchor scales
    # A shorter side of 1000 (longer at most 1333), padded to a multiple of 2**6.
    assert (model.short_side, model.long_side) == (1000, 1333)
    assert model.input_size[0] == model.input_size[1] >= 1333
    assert model.input_size[0] % 2 ** model.max_level == 0
    assert len(model.anchor.aspect_ratios) == 3
    assert model.roi_generator.num_proposals == 2000
    assert model.roi_generator.test_num_proposals == 1000
    assert model.roi_generator.nms_iou_threshold == 0.7
    assert params.task.train_data.parser.rpn_batch_size_per_im == 256
    assert params.task.train_data.parser.rpn_fg_fraction == 0.5
    assert model.roi_sampler.num_sampled_rois == 512
    assert model.roi_sampler.foreground_fraction == 0.25
    assert params.task.train_data.global_batch_size == 16
    assert params.task.losses.l2_weight_decay == 1e-4
    optimizer = params.trainer.optimizer_config
    assert optimizer.optimizer.sgd.momentum == 0.9
    steps = params.trainer.train_steps
    epoch = 118000 // 16
    assert steps == 16 * epoch
    assert optimizer.learning_rate.stepwise.boundaries == [10 * epoch, 14 * epoch]
    assert optimizer.learning_rate.stepwise.values == pytest.approx([0.02, 0.002, 0.0002])


def test_mimic_is_off_by_default_and_follows_the_paper_when_on():
    for name in (experiments.COCO_EXPERIMENT, experiments.SYNTHETIC_EXPERIMENT):
        assert not exp_factory.get_exp_config(name).task.model.mimic.enabled
    # The mimicking COCO experiment is the COCO experiment with the branch on.
    coco = exp_factory.get_exp_config(experiments.COCO_EXPERIMENT).as_dict()
    mimicking = exp_factory.get_exp_config(experiments.COCO_MIMIC_EXPERIMENT).as_dict()
    assert mimicking["task"]["model"]["mimic"].pop("enabled")
    coco["task"]["model"]["mimic"].pop("enabled")
    assert mimicking == coco
    mimic = config.Mimic()
    assert (mimic.rois_per_image, mimic.roi_type, mimic.iou_threshold, mimic.crop_size,
            mimic.mimic_weight, mimic.classification_weight, mimic.reduction) == (
        32, "positive", 0.5, 224, 0.1, 0.1, "sum")
    params = exp_factory.get_exp_config(experiments.COCO_EXPERIMENT)
    params = hyperparams.override_params_dict(
        params, "task.model.mimic.enabled=true", is_strict=True)
    assert "mimicking" in config.describe(params.task.model)
