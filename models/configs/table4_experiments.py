"""The COCO experiments of the paper's Table 4 (stronger backbones), registered in
Model Garden's exp_factory.

Table 4 compares regular, DCNv1 and DCNv2 (with R-CNN feature mimicking) Faster and
Mask R-CNN on ResNet-101 and ResNeXt-101 (64x4d). For each backbone and family there
are two experiments, the ResNet-50 COCO experiment with the backbone swapped:

* `dcn_maskrcnn_{backbone}fpn_coco` and `dcn_fasterrcnn_{backbone}_coco`: the
  regular and DCNv1 rows (`task.model.variant` regular / dcnv1);
* the same names with `_mimic`: the DCNv2 rows (variant dcnv2, the default).

`{backbone}` is `resnet101` or `resnext101`. Model Garden publishes no ImageNet
checkpoint of these backbones in its `dcn_resnet` layout, so the experiments read one
from `checkpoints/{backbone}_imagenet` (a checkpoint, or a folder of them, holding
the `backbone` of an ImageNet classifier with the same `backbone.dcn_resnet`
settings, e.g. trained by Model Garden's image classification task);
`task.init_checkpoint=...` points elsewhere. Training refuses to start when it is
missing.
"""

import functools
import os
from typing import Callable

from official.core import config_definitions as cfg
from official.core import exp_factory

from models.configs import experiments
from models.configs import fasterrcnn_experiments

CHECKPOINTS = "checkpoints"
# name -> the `backbone.dcn_resnet` settings of the backbone.
BACKBONES = {
    "resnet101": {"model_id": 101},
    "resnext101": {"model_id": 101, "cardinality": 64, "width_per_group": 4},
}


def with_backbone(base: Callable[[], cfg.ExperimentConfig], backbone: str
                  ) -> cfg.ExperimentConfig:
    """`base()` with Table 4's `backbone` and its ImageNet checkpoint path."""
    params = base()
    params.override({"task": {
        "model": {"backbone": {"dcn_resnet": BACKBONES[backbone]}},
        "init_checkpoint": os.path.join(CHECKPOINTS, f"{backbone}_imagenet"),
    }}, is_strict=True)
    return params


def _register() -> dict:
    """Registers the experiments; returns `{name: the ResNet-50 experiment it swaps
    the backbone of}`."""
    registered = {}
    for backbone in BACKBONES:
        for name, base in (
                (f"dcn_maskrcnn_{backbone}fpn_coco", experiments.dcn_maskrcnn_resnetfpn_coco),
                (f"dcn_maskrcnn_{backbone}fpn_coco_mimic",
                 experiments.dcn_maskrcnn_resnetfpn_coco_mimic),
                (f"dcn_fasterrcnn_{backbone}_coco",
                 fasterrcnn_experiments.dcn_fasterrcnn_resnet_coco),
                (f"dcn_fasterrcnn_{backbone}_coco_mimic",
                 fasterrcnn_experiments.dcn_fasterrcnn_resnet_coco_mimic)):
            exp_factory.register_config_factory(name)(
                functools.partial(with_backbone, base, backbone))
            registered[name] = base
    return registered


EXPERIMENTS = _register()
