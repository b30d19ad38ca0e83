"""models.training.pretraining: the confusion matrix, the regular backbone config, and
a tiny pretraining whose checkpoint initialises every backbone variable of a DCNv2
Mask R-CNN (offset branches left at zero), reused when the settings are unchanged."""

import dataclasses
import os

import numpy as np
import pytest
from official.core import task_factory

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.data import synthetic
from models.training import pretraining
from tests.models import helpers

TINY = pretraining.PretrainSettings(image_size=32, train_images=8, val_images=6, steps=2,
                                    batch_size=4, learning_rate=1e-3, seed=3)
GENERATOR = synthetic.GeneratorConfig(max_strokes=0, min_strokes=0, fills=("flat",),
                                      centred=True, min_area_frac=0.1)


def test_confusion_matrix_counts_pairs(rng):
    """Entry (t, p) counts the samples of true class t predicted as p, as a plain
    loop counts them (classes absent from both arrays give empty rows / columns)."""
    labels = rng.integers(0, 5, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, 200))
    matrix = pretraining.confusion_matrix(labels, predictions, 7)
    want = np.zeros((7, 7), np.int64)
    for true, predicted in zip(labels, predictions):
        want[true, predicted] += 1
    np.testing.assert_array_equal(matrix, want)
    assert matrix.sum() == 200 and not matrix[5:].any() and not matrix[:, 5:].any()


def test_regular_backbone_config_drops_the_deformable_stages(tiny_overrides):
    """The backbone every variant reads is the variant's ResNet with no deformable
    stage, otherwise unchanged; a backbone other than `dcn_resnet` is refused."""
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides("dcnv2"))
    resolved = params.task.model.backbone.dcn_resnet.as_dict()
    regular = pretraining.regular_backbone_config(params.task.model)
    assert regular.type == "dcn_resnet"
    assert regular.dcn_resnet.deformable_stages == []
    assert {k: v for k, v in regular.dcn_resnet.as_dict().items()
            if k != "deformable_stages"} == {
                k: v for k, v in resolved.items() if k != "deformable_stages"}
    assert regular.dcn_resnet.model_id == 10
    # The config given is left as it was.
    assert params.task.model.backbone.dcn_resnet.deformable_stages == resolved[
        "deformable_stages"]

    other = runtime.experiment_params(
        SYNTHETIC_EXPERIMENT, tiny_overrides("regular"),
        {"task": {"model": {"backbone": {"type": "resnet"}}}}, lock=False)
    with pytest.raises(ValueError, match="dcn_resnet"):
        pretraining.regular_backbone_config(other.task.model)


@pytest.mark.slow
def test_pretrained_backbone_initialises_every_dcnv2_backbone_variable(
        tiny_overrides, tmp_path):
    """A tiny pretraining writes a checkpoint of the regular backbone. Through
    `DcnMaskRCNNTask.initialize` (modules 'backbone') it sets every backbone variable
    of a DCNv2 model to the checkpoint's value, except the deformable offset / mask
    branches, which stay zero. A second call with the same settings reuses the
    checkpoint; a changed setting trains again."""
    out_dir = str(tmp_path / "pretrained")
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides("dcnv2"))
    summary = pretraining.pretrain_backbone(out_dir, params.task.model, GENERATOR, TINY,
                                            verbose=0)
    assert not summary["reused"]
    assert summary["checkpoint"] == os.path.join(out_dir, pretraining.CHECKPOINT_NAME)
    confusion = np.array(summary["confusion"])
    assert confusion.shape == (6, 6) and confusion.sum() == TINY.val_images
    assert summary["val_accuracy"] == pytest.approx(np.trace(confusion) / TINY.val_images)
    assert summary["classes"] == list(synthetic.CLASS_NAMES)

    # Initialise a DCNv2 model from it, as a training run does.
    init = runtime.experiment_params(
        SYNTHETIC_EXPERIMENT, tiny_overrides("dcnv2"),
        {"task": {"init_checkpoint": summary["checkpoint"],
                  "init_checkpoint_modules": "backbone"}})
    task = task_factory.get_task(init.task)
    model = task.build_model()
    task.initialize(model)
    helpers.assert_backbone_restored(model.backbone, summary["checkpoint"], str(tmp_path))

    # Same settings: reused, nothing retrained. Another setting: trained again.
    index = summary["checkpoint"] + ".index"
    stamp = os.stat(index).st_mtime_ns
    again = pretraining.pretrain_backbone(out_dir, params.task.model, GENERATOR, TINY,
                                          verbose=0)
    assert again["reused"] and os.stat(index).st_mtime_ns == stamp
    assert {k: v for k, v in again.items() if k != "reused"} == {
        k: v for k, v in summary.items() if k != "reused"}
    changed = pretraining.pretrain_backbone(
        out_dir, params.task.model, GENERATOR,
        dataclasses.replace(TINY, steps=3), verbose=0)
    assert not changed["reused"] and os.stat(index).st_mtime_ns != stamp
