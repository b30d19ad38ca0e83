"""Importing this module registers everything `models/` adds to Model Garden's factories:
Model Garden's own vision components, the `dcn_resnet` backbone (backbone factory),
the `DcnMaskRCNNTask` task (task factory) and the experiments
`dcn_maskrcnn_resnetfpn_coco` and `dcn_maskrcnn_synthetic` (exp_factory), along with
the tf_keras serializable layers and model of `models.modeling`.
"""

from official.vision import registry_imports  # noqa: F401  Model Garden's own registrations

from models.configs import experiments  # noqa: F401
from models.modeling.backbones import dcn_resnet  # noqa: F401
from models.tasks import maskrcnn  # noqa: F401
