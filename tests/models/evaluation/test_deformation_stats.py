"""models.evaluation.deformation_stats: offset and modulation statistics of a tiny
DCNv2 Mask R-CNN whose branches are set to known constants, and none for a regular
model."""

import math

import numpy as np
import pytest
import tensorflow as tf
from official.core import task_factory

from keras_dcn import tf_keras as dcn_layers
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.evaluation import deformation_stats

SIZE = 64


@pytest.fixture(scope="module")
def models(tiny_overrides):
    """`models(variant)`: a tiny model of `variant`, built once per module."""
    built = {}

    def get(variant, dtype="float32"):
        if (variant, dtype) not in built:
            params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides(variant))
            with runtime.mixed_precision(dtype):
                built[variant, dtype] = task_factory.get_task(params.task).build_model()
        return built[variant, dtype]
    return get


def _inputs(rng):
    images = tf.constant(rng.normal(0.0, 1.0, (2, SIZE, SIZE, 3)), tf.float32)
    info = tf.constant([[[SIZE, SIZE], [SIZE, SIZE], [1.0, 1.0], [0.0, 0.0]]] * 2,
                       tf.float32)
    return images, info


def _deform_convs(model):
    return [m for m in model.backbone.submodules if isinstance(m, dcn_layers.DeformConv2D)]


def _stage_of_each_conv(model, images, info):
    """`{layer: 'convK'}` from each deformable conv's output size on `images`, seen
    through a hook of this test: stride 2 ** K is ResNet stage convK."""
    sizes = {}

    def record(layer, inputs, offsets, mask, rois):
        sizes[layer] = int(offsets.shape[1])
        return offsets, mask

    layers = _deform_convs(model)
    for layer in layers:
        layer.set_sampling_hook(record)
    try:
        model(images, image_shape=info[:, 1, :], training=False)
    finally:
        for layer in layers:
            layer.set_sampling_hook(None)
    return {layer: f"conv{int(math.log2(SIZE // size))}" for layer, size in sizes.items()}


def _set_conv_branch(layer, pair, mask_logit=0.0):
    """Offsets `pair` (dy, dx) at every tap and position, mask sigmoid(mask_logit)."""
    taps = layer.kernel_size[0] * layer.kernel_size[1] * layer.deformable_groups
    bias = np.concatenate([np.tile(np.asarray(pair, np.float32), taps),
                           np.full(taps if layer.modulated else 0, mask_logit, np.float32)])
    layer.offset_kernel.assign(np.zeros(layer.offset_kernel.shape, np.float32))
    layer.offset_bias.assign(bias)


def _set_pool_branch(pool, pair, mask_logit=0.0):
    """Bin offsets `pair` (dy, dx) for every RoI and bin, mask sigmoid(mask_logit)."""
    bins = pool.output_size[0] * pool.output_size[1]
    bias = np.concatenate([np.tile(np.asarray(pair, np.float32), bins),
                           np.full(bins if pool.modulated else 0, mask_logit, np.float32)])
    pool.offset_kernel.assign(np.zeros(pool.offset_kernel.shape, np.float32))
    pool.offset_bias.assign(bias)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_constant_offsets_give_their_length_everywhere(models, rng):
    """Every conv offset (3, 4) and zero mask logits: each deformable stage (conv3-5 of
    DCNv2) reports offsets of length 5, all over one pixel, modulation 0.5 with std 0;
    each deformable RoI pooling reports gamma * |(dy, dx)| and its modulation."""
    model = models("dcnv2")
    images, info = _inputs(rng)
    for layer in _deform_convs(model):
        _set_conv_branch(layer, (3.0, 4.0))
    _set_pool_branch(model.roi_aligner.pool, (0.3, 0.4), mask_logit=math.log(3.0))
    _set_pool_branch(model.mask_roi_aligner.pool, (-1.2, 0.5), mask_logit=-1.0)
    stats = deformation_stats.deformation_statistics(model, images, info)

    assert set(stats) == {"conv3", "conv4", "conv5", "box RoI pooling",
                          "mask RoI pooling"}
    for stage in ("conv3", "conv4", "conv5"):
        assert stats[stage]["offset_mean"] == pytest.approx(5.0, rel=1e-6)
        assert stats[stage]["offset_over_1"] == 1.0
        assert stats[stage]["mask_mean"] == pytest.approx(0.5, abs=1e-7)
        assert stats[stage]["mask_std"] == pytest.approx(0.0, abs=1e-7)
    box, mask = stats["box RoI pooling"], stats["mask RoI pooling"]
    gamma = model.roi_aligner.pool.gamma
    assert box["offset_mean"] == pytest.approx(gamma * 0.5, rel=1e-5)
    assert mask["offset_mean"] == pytest.approx(gamma * 1.3, rel=1e-5)
    assert box["offset_over_1"] == mask["offset_over_1"] == 0.0
    assert box["mask_mean"] == pytest.approx(0.75, rel=1e-6)
    assert mask["mask_mean"] == pytest.approx(_sigmoid(-1.0), rel=1e-6)
    assert box["mask_std"] == pytest.approx(0.0, abs=1e-7)
    # The hooks are removed afterwards.
    assert all(layer._sampling_hook is None for layer in _deform_convs(model))
    assert model.roi_aligner.pool._sampling_hook is None


def test_bfloat16_model_statistics_are_summed_in_float(models, rng):
    """A model computing in bfloat16 hands its hooks bfloat16 offsets and masks: tens
    of thousands of modulation values 0.5 still average 0.5 (a bfloat16 running sum
    would stall near 256), and offsets (3, 4) still measure 5."""
    model = models("dcnv2", "bfloat16")
    images, info = _inputs(rng)
    for layer in _deform_convs(model):
        _set_conv_branch(layer, (3.0, 4.0))
    stats = deformation_stats.deformation_statistics(model, tf.tile(images, [8, 1, 1, 1]),
                                                     tf.tile(info, [8, 1, 1]))
    for stage in ("conv3", "conv4", "conv5"):
        assert stats[stage]["offset_mean"] == pytest.approx(5.0, rel=1e-2)
        assert stats[stage]["mask_mean"] == pytest.approx(0.5, abs=1e-3)


def test_statistics_pool_the_layers_of_each_stage(models, rng):
    """Different offsets per layer: a stage's statistics pool its two convolutions
    (same output size, so equal weight): the mean of their lengths, the share over one
    pixel, the mean and std of their modulations. Stages are found independently from
    each layer's output size."""
    model = models("dcnv2")
    images, info = _inputs(rng)
    stages = _stage_of_each_conv(model, images, info)
    assert sorted(set(stages.values())) == ["conv3", "conv4", "conv5"]
    lengths, logits = {}, {}
    for index, layer in enumerate(_deform_convs(model)):
        scale = [1, 3, 5, 7, 9, 11][index]  # lengths 0.5, 1.5, ..., 5.5 pixels
        logit = [-2.0, 1.0, 0.5, 0.0, -0.5, 2.0][index]
        _set_conv_branch(layer, (0.3 * scale, 0.4 * scale), logit)
        lengths.setdefault(stages[layer], []).append(0.5 * scale)
        logits.setdefault(stages[layer], []).append(logit)
    stats = deformation_stats.deformation_statistics(model, images, info)
    for stage, values in lengths.items():
        assert len(values) == 2
        masks = np.array([_sigmoid(v) for v in logits[stage]])
        assert stats[stage]["offset_mean"] == pytest.approx(np.mean(values), rel=1e-5)
        assert stats[stage]["offset_over_1"] == pytest.approx(
            np.mean(np.array(values) > 1.0))
        assert stats[stage]["mask_mean"] == pytest.approx(masks.mean(), rel=1e-5)
        assert stats[stage]["mask_std"] == pytest.approx(masks.std(), rel=1e-4)


def test_regular_model_has_no_statistics(models, rng):
    """A regular model has no deformable layer: an empty dict."""
    images, info = _inputs(rng)
    assert deformation_stats.deformation_statistics(models("regular"), images, info) == {}
