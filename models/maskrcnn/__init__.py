"""Deformable Mask R-CNN on Model Garden: configs, model factory, task, experiments.

Importing this package registers the `dcn_resnet` backbone, the
`DcnMaskRCNNTask` task and the experiments `dcn_maskrcnn_resnetfpn_coco` and
`dcn_maskrcnn_synthetic` with Model Garden's factories.
"""

from official.vision import registry_imports  # noqa: F401  Model Garden's own registrations

from models import backbones  # noqa: F401  registers `dcn_resnet`
from models.maskrcnn import config
from models.maskrcnn import experiments
from models.maskrcnn import factory
from models.maskrcnn import heads
from models.maskrcnn import mimic
from models.maskrcnn import model
from models.maskrcnn import task
from models.maskrcnn.config import DcnMaskRCNN, DcnMaskRCNNTask, Mimic, resolve_variant
from models.maskrcnn.experiments import COCO_EXPERIMENT, SYNTHETIC_EXPERIMENT
from models.maskrcnn.model import DcnMaskRCNNModel

__all__ = ["COCO_EXPERIMENT", "SYNTHETIC_EXPERIMENT", "DcnMaskRCNN", "DcnMaskRCNNModel",
           "DcnMaskRCNNTask", "Mimic", "config", "experiments", "factory", "heads",
           "mimic", "model", "resolve_variant", "task"]
