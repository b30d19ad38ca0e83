"""Importing this module registers everything `models/` adds to Model Garden's factories:
Model Garden's own vision components, the `dcn_resnet` backbone (backbone factory),
the `c4_c5` decoder (decoder factory), the `DcnMaskRCNNTask` task (task factory) and
the Mask R-CNN and Faster R-CNN experiments (`models.configs.experiments`,
`models.configs.fasterrcnn_experiments`, `models.configs.table4_experiments`;
exp_factory), along with the tf_keras
serializable layers and model of `models.modeling`.
"""

from official.vision import registry_imports  # noqa: F401  Model Garden's own registrations

from models.configs import experiments  # noqa: F401
from models.configs import fasterrcnn_experiments  # noqa: F401
from models.configs import table4_experiments  # noqa: F401
from models.modeling.backbones import dcn_resnet  # noqa: F401
from models.tasks import maskrcnn  # noqa: F401
