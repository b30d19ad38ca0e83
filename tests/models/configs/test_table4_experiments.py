"""models.configs.table4_experiments: the paper's Table 4 (ResNet-101 and ResNeXt-101
64x4d backbones) as COCO experiments of both families, each the ResNet-50 experiment
with only the backbone and its ImageNet checkpoint changed."""

import pytest
from official.core import exp_factory

from models.configs import table4_experiments as table4

NAMES = sorted(table4.EXPERIMENTS)


def test_every_row_of_table_4_has_its_experiments():
    assert NAMES == sorted(
        f"dcn_{family}_{backbone}{fpn}_coco{mimic}"
        for family, fpn in (("maskrcnn", "fpn"), ("fasterrcnn", ""))
        for backbone in ("resnet101", "resnext101") for mimic in ("", "_mimic"))


@pytest.mark.parametrize("name", NAMES)
def test_experiment_is_its_resnet50_experiment_with_another_backbone(name):
    params = exp_factory.get_exp_config(name)
    params.validate()
    backbone = params.task.model.backbone.dcn_resnet
    assert backbone.model_id == 101
    want = (64, 4) if "resnext101" in name else (1, 64)
    assert (backbone.cardinality, backbone.width_per_group) == want
    assert params.task.init_checkpoint == (
        "checkpoints/resnext101_imagenet" if "resnext101" in name
        else "checkpoints/resnet101_imagenet")
    assert params.task.model.mimic.enabled == name.endswith("_mimic")
    base = table4.EXPERIMENTS[name]().as_dict()
    mine = params.as_dict()
    for config in (base, mine):
        config["task"]["model"]["backbone"]["dcn_resnet"].update(
            model_id=None, cardinality=None, width_per_group=None)
        config["task"]["init_checkpoint"] = None
    assert mine == base
