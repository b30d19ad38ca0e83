"""models.modeling.factory: the RoI aligners a config describes, and a regular model that
pools through the op (no Model Garden RoI aligner left in it)."""

import pytest
from official.core import task_factory
from official.vision.modeling.layers import roi_aligner

from models.common import runtime
from models.configs import maskrcnn as dcn_config
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.modeling import factory
from models.modeling.layers.deform_roi_aligner import MultilevelDeformableROIAligner


@pytest.mark.parametrize("deformable", [False, True])
def test_build_roi_aligner_follows_the_config(deformable):
    """Every field of a `DeformROIAligner` config reaches the layer, `deformable`
    included; the branch exists only for a deformable one."""
    config = dcn_config.DeformROIAligner(crop_size=14, deformable=deformable,
                                         modulated=False, sampling_ratio=1, aligned=False,
                                         gamma=0.2, hidden_units=16,
                                         offset_lr_multiplier=0.5)
    aligner = factory.build_roi_aligner(config)
    assert isinstance(aligner, MultilevelDeformableROIAligner)
    got = aligner.get_config()
    for field in ("crop_size", "deformable", "modulated", "sampling_ratio", "aligned",
                  "gamma", "hidden_units", "offset_lr_multiplier"):
        assert got[field] == getattr(config, field), field
    assert (aligner.pool is not None) == deformable


@pytest.mark.slow
def test_regular_model_has_no_model_garden_aligner(tiny_overrides):
    """The regular variant's box and mask aligners are plain `MultilevelDeformableROIAligner`s
    (no weights, the config's sampling), and no Model Garden `MultilevelROIAligner` is
    anywhere in the model."""
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides("regular"))
    model = task_factory.get_task(params.task).build_model()
    assert not any(isinstance(m, roi_aligner.MultilevelROIAligner)
                   for m in model.submodules)
    model_config = params.task.model
    for aligner, config, crop in ((model.roi_aligner, model_config.roi_aligner, 7),
                                  (model.mask_roi_aligner, model_config.mask_roi_aligner,
                                   14)):
        assert type(aligner) is MultilevelDeformableROIAligner
        got = aligner.get_config()
        assert got["deformable"] is False and got["crop_size"] == crop
        assert got["sampling_ratio"] == config.sampling_ratio == 2
        assert got["aligned"] == config.aligned
        assert aligner.pool is None and aligner.weights == []
