"""models.training.ablation: the table columns that name what deforms in a row, as the
paper's Table 1 describes each row (training and evaluating a row runs end to end in
tests/models/test_ablation.py)."""

import pytest

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.training import ablation


@pytest.mark.parametrize("variant, mimic, want", [
    ("regular", False, ("none", "no", "no")),
    ("dcnv1", False, ("conv5", "yes", "no")),
    ("dcnv2", False, ("conv3-conv4-conv5 (mod.)", "modulated", "no")),
    ("regular", True, ("none", "no", "yes")),
    ("dcnv2", True, ("conv3-conv4-conv5 (mod.)", "modulated", "yes")),
])
def test_deformable_columns_name_each_row(variant, mimic, want):
    params = runtime.experiment_params(
        SYNTHETIC_EXPERIMENT, {"task": {"model": {"variant": variant,
                                                  "mimic": {"enabled": mimic}}}})
    columns = ablation.deformable_columns(params)
    assert (columns["deform. conv"], columns["deform. RoI pool"], columns["mimic"]) == want


def test_custom_backbone_stages_are_named_as_configured():
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, {"task": {"model": {
        "variant": "custom",
        "backbone": {"dcn_resnet": {"deformable_stages": [4, 5], "modulated": False}},
        "roi_aligner": {"deformable": False}}}})
    columns = ablation.deformable_columns(params)
    assert columns == {"deform. conv": "conv4-conv5", "deform. RoI pool": "no",
                       "mimic": "no"}
