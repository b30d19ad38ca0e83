"""models.tasks.maskrcnn: each Mask R-CNN variant builds through the registered task,
has the layers its variant names, gets gradients into every part that should learn,
runs a training step and a COCO evaluation (tiny model, eager); the task initialises a
deformable backbone from a regular checkpoint, every variable of it."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory
from official.core import task_factory
from official.vision.modeling.backbones import resnet

from keras_dcn import tf_keras as dcn_layers
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT as EXPERIMENT
from models.modeling import classifier_stats
from models.modeling.backbones.dcn_resnet import DeformableResNet
from models.modeling.layers.deform_roi_aligner import MultilevelDeformableROIAligner
from models.tasks import maskrcnn as dcn_task
from tests.models import helpers

BACKBONE_SPEC = tf_keras.layers.InputSpec(shape=[None, 64, 64, 3])

# variant -> (deformable convs in ResNet-10 (one basic block, two 3x3 convs, per stage),
#             modulated,
#             deformable pooling, modulated pooling)
EXPECTED = {
    "regular": (0, None, False, None),
    "dcnv1": (2, False, True, False),
    "dcnv2": (6, True, True, True),
}


# FPN levels 2-5, so that conv5 (dcnv1's deformable stage) feeds the heads.
LEVELS = {"task": {"model": {"max_level": 5}}}


@pytest.fixture(scope="module")
def batches(tiny_overrides):
    """One training batch and one validation batch, parsed once for all variants."""
    params = runtime.experiment_params(EXPERIMENT, tiny_overrides("regular"), LEVELS)
    task = task_factory.get_task(params.task)
    train = next(iter(task.build_inputs(params.task.train_data)))
    val = next(iter(task.build_inputs(params.task.validation_data)))
    return train, val


def _assert_every_part_gets_a_gradient(task, model, batch, deformable_pooling):
    """Every trainable variable gets a non-zero gradient from the data terms of the
    loss (no weight decay), except the hidden layers of the deformable RoI-pooling
    branches: their only path to the loss runs through the branch's zero-initialised
    output layer."""
    images, labels = batch
    with tf.GradientTape() as tape:
        outputs = model(images, **model._target_inputs(labels), training=True)
        loss = task.build_losses(outputs, labels, model.losses)["model_loss"]
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    without = {v.name for v, g in zip(variables, grads) if g is None or not np.any(g)}
    hidden = {v.name for aligner in (model.roi_aligner, model.mask_roi_aligner)
              if deformable_pooling for v in aligner.pool.weights
              if "/hidden" in v.name}
    assert without == hidden


# dcnv2 holds every deformable layer; the other two take a further ~10 s each.
@pytest.mark.parametrize("variant", [pytest.param("regular", marks=pytest.mark.slow),
                                     pytest.param("dcnv1", marks=pytest.mark.slow),
                                     "dcnv2"])
def test_variant_builds_trains_and_evaluates(variant, tiny_overrides, batches, tmp_path):
    params = runtime.experiment_params(EXPERIMENT, tiny_overrides(variant), LEVELS)
    task = task_factory.get_task(params.task, logging_dir=str(tmp_path))
    assert isinstance(task, dcn_task.DcnMaskRCNNTask)
    model = task.build_model()

    convs, modulated, pooling, pool_modulated = EXPECTED[variant]
    deformable = [m for m in model.backbone.submodules
                  if isinstance(m, dcn_layers.DeformConv2D)]
    assert len(deformable) == convs
    assert all(conv.modulated == modulated for conv in deformable)
    for aligner in (model.roi_aligner, model.mask_roi_aligner):
        # Every variant pools through the op; a regular one without the branch.
        assert isinstance(aligner, MultilevelDeformableROIAligner)
        assert aligner.get_config()["deformable"] == pooling
        if pooling:
            assert aligner.pool.modulated == pool_modulated
        else:
            assert aligner.pool is None and not aligner.weights
    assert model.roi_aligner.get_config()["crop_size"] == 7
    assert model.mask_roi_aligner.get_config()["crop_size"] == 14

    train, val = batches
    _assert_every_part_gets_a_gradient(task, model, train, pooling)
    optimizer = tf_keras.optimizers.SGD(0.01, momentum=0.9)
    metrics = task.build_metrics(training=True)
    logs = task.train_step(train, model, optimizer, metrics)
    losses = {m.name: float(m.result()) for m in metrics}
    assert np.isfinite(float(logs["loss"])) and all(np.isfinite(list(losses.values())))
    assert losses["mask_loss"] > 0 and losses["frcnn_cls_loss"] > 0
    # The classifier's statistics are logged too: shares between 0 and 1.
    for name in classifier_stats.NAMES:
        assert 0.0 <= losses[name] <= 1.0, name

    task.build_metrics(training=False)
    state = task.aggregate_logs(None, task.validation_step(val, model))
    results = task.reduce_aggregated_logs(state)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert key in results and "mask_" + key in results
    assert all(np.isfinite(float(v)) for v in results.values())


def test_task_initialize_loads_every_variable_of_a_regular_backbone_checkpoint(
        tmp_path, rng):
    """`DcnMaskRCNNTask.initialize` (init_checkpoint_modules='backbone') restores a
    regular ResNet checkpoint whose every variable (kernels, batch-norm scales and
    shifts, moving statistics) holds a random value: each one, read back under its
    key, is in the deformable backbone; only the offset branches are new, and zero. A
    checkpoint that misses regular variables is refused."""
    class Holder(tf.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

    regular = resnet.ResNet(model_id=18, input_specs=BACKBONE_SPEC)
    for variable in regular.variables:  # no value left at a default a fresh model has
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    path = tf.train.Checkpoint(backbone=regular).write(str(tmp_path / "resnet18"))
    params = exp_factory.get_exp_config(EXPERIMENT)
    params.task.init_checkpoint = path
    params.task.init_checkpoint_modules = "backbone"
    task = dcn_task.DcnMaskRCNNTask(params.task)

    deformable = DeformableResNet(model_id=18, input_specs=BACKBONE_SPEC)
    task.initialize(Holder(deformable))
    helpers.assert_backbone_restored(deformable, path, str(tmp_path))

    # A checkpoint holding the weights under another name has no backbone.
    params.task.init_checkpoint = tf.train.Checkpoint(decoder=regular).write(
        str(tmp_path / "elsewhere"))
    with pytest.raises(AssertionError, match="not in"):
        dcn_task.DcnMaskRCNNTask(params.task).initialize(Holder(deformable))


def test_detectron_normalisation_freezes_what_it_names(tiny_overrides, batches, tmp_path):
    """Frozen BN, frozen stem and conv2, BN-free 2fc head (the COCO experiment's
    setting) on the tiny model: a training step changes no frozen weight and no
    backbone statistic, and still trains conv3 and the head."""
    overrides = tiny_overrides("dcnv2")
    model_overrides = overrides["task"]["model"]
    model_overrides["backbone"]["dcn_resnet"].update(bn_trainable=False, freeze_at=2)
    model_overrides["detection_head"]["fc_norm"] = False
    params = runtime.experiment_params(EXPERIMENT, overrides, LEVELS)
    task = task_factory.get_task(params.task, logging_dir=str(tmp_path))
    model = task.build_model()
    head = model.detection_head[0]
    assert not [v for v in head.variables if "batch_norm" in v.name]
    frozen = [v for v in model.backbone.weights if v.name.split("/")[0] in {
        layer.name for layer in model.backbone._frozen_layers()}]
    statistics = [v for v in model.backbone.weights if "moving_" in v.name]
    assert frozen and statistics
    watched = {id(v): v for v in frozen + statistics + model.backbone.trainable_weights
               + head.trainable_weights}
    before = {key: v.numpy().copy() for key, v in watched.items()}

    optimizer = tf_keras.optimizers.SGD(0.01, momentum=0.9)
    task.train_step(batches[0], model, optimizer, task.build_metrics(training=True))
    for v in frozen + statistics:
        np.testing.assert_array_equal(v.numpy(), before[id(v)], err_msg=v.name)
    moved = [v.name for v in model.backbone.trainable_weights + head.trainable_weights
             if not np.array_equal(v.numpy(), before[id(v)])]
    assert any("deformable_residual_block" in name for name in moved)
    assert any("detection-scores" in name for name in moved)


def test_task_initialize_refuses_a_missing_checkpoint(tmp_path):
    params = exp_factory.get_exp_config(EXPERIMENT)
    for missing in (str(tmp_path / "nothing"), str(tmp_path)):  # a path, an empty folder
        params.task.init_checkpoint = missing
        with pytest.raises(FileNotFoundError, match="task.init_checkpoint .* holds no checkpoint"):
            dcn_task.DcnMaskRCNNTask(params.task).initialize(None)
