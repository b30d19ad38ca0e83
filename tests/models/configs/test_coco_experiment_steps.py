"""Every registered COCO experiment trains a step through its own input pipeline: the
model as registered (backbone, resize, normalisation, samplers, heads, mimicking) on
the tiny set's TFRecords, scaled to a shorter side of 96 in 128x128, without its
ImageNet checkpoint. (`dcn_maskrcnn_resnetfpn_coco` is trained by the README's
commands in tests/models/test_coco_recipe.py.)

Minutes in all (ResNet-50/101 and ResNeXt-101 models): slow tests only."""

import numpy as np
import pytest
import tf_keras
from official.core import exp_factory, task_factory
from official.modeling import hyperparams

import models.registry_imports  # noqa: F401  registers every experiment
from models.configs import experiments

pytestmark = pytest.mark.slow
COCO_EXPERIMENTS = sorted(name for name in exp_factory._REGISTERED_CONFIGS
                          if "_coco" in name and name.startswith("dcn_")
                          and name != experiments.COCO_EXPERIMENT)


def test_the_coco_experiments_are_found():
    assert len(COCO_EXPERIMENTS) == 11  # 3 ResNet-50 + 8 of Table 4


@pytest.mark.parametrize("name", COCO_EXPERIMENTS)
def test_coco_experiment_trains_a_step_through_its_input_pipeline(name, tiny_data):
    params = exp_factory.get_exp_config(name)
    mimic = params.task.model.mimic.enabled
    params = hyperparams.override_params_dict(params, {"task": {
        "init_checkpoint": "",
        "annotation_file": tiny_data["annotation_file"],
        "model": {"input_size": [128, 128, 3], "short_side": 96, "long_side": 128,
                  "mimic": {"rois_per_image": 2, "roi_type": "all", "crop_size": 64}},
        "train_data": {"input_path": tiny_data["train"], "global_batch_size": 2,
                       "shuffle_buffer_size": 4},
        "validation_data": {"input_path": tiny_data["val"], "global_batch_size": 2},
    }}, is_strict=True)
    coco_task = task_factory.get_task(params.task)
    model = coco_task.build_model()
    images, labels = next(iter(coco_task.build_inputs(params.task.train_data)))
    assert images.shape == (2, 128, 128, 3)
    np.testing.assert_array_equal(labels["image_info"][:, 1], [[96, 96]] * 2)
    metrics = coco_task.build_metrics(training=True)
    logs = coco_task.train_step((images, labels), model,
                                tf_keras.optimizers.SGD(0.01, momentum=0.9), metrics)
    results = {m.name: float(m.result()) for m in metrics}
    assert np.isfinite(float(logs["loss"]))
    assert (results.get("mask_loss", 0.0) > 0) == params.task.model.include_mask
    assert ("mimic_loss" in results) == mimic
