"""Backbones registered with Model Garden's backbone factory.

Importing this package registers `dcn_resnet` (see `dcn_resnet.py`); its config is
`models.backbones.config.DcnResNet`, selected through `models.backbones.config.Backbone`.
"""

from models.backbones import config
from models.backbones import dcn_resnet
from models.backbones.config import Backbone, DcnResNet
from models.backbones.dcn_resnet import DeformableResNet

__all__ = ["Backbone", "DcnResNet", "DeformableResNet", "config", "dcn_resnet"]
