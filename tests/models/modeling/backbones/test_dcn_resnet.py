"""models.modeling.backbones.dcn_resnet: the deformable ResNet in Model Garden's backbone
factory, its checkpoint compatibility with Model Garden's ResNet, and its state at
initialisation."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.configs import common
from official.vision.modeling import backbones as mg_backbones
from official.vision.modeling.backbones import resnet
from official.vision.modeling.layers import nn_blocks

from keras_dcn import tf_keras as dcn_layers
from models.configs.backbones import Backbone, DcnResNet
from models.modeling.backbones.dcn_resnet import DeformableResNet

SPEC = tf_keras.layers.InputSpec(shape=[None, 64, 64, 3])


def _deformable_convs(model):
    return [m for m in model.submodules if isinstance(m, dcn_layers.DeformConv2D)]


def _randomize_batch_norm(model, rng):
    for variable in model.variables:
        if "moving_mean" in variable.name:
            variable.assign(rng.uniform(-0.1, 0.1, variable.shape).astype(np.float32))
        elif "moving_variance" in variable.name:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
        elif "gamma" in variable.name or "beta" in variable.name:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))


def test_registered_builder_makes_deformable_resnet():
    config = Backbone(type="dcn_resnet", dcn_resnet=DcnResNet(model_id=18))
    model = mg_backbones.factory.build_backbone(
        input_specs=SPEC, backbone_config=config,
        norm_activation_config=common.NormActivation())
    assert isinstance(model, DeformableResNet)
    assert sorted(model.output_specs) == ["2", "3", "4", "5"]
    # Both 3x3 convs of each basic block of conv3-conv5 (2 blocks each).
    convs = _deformable_convs(model)
    assert len(convs) == 12
    assert sorted(conv.strides for conv in convs) == [(1, 1)] * 9 + [(2, 2)] * 3
    assert all(conv.modulated and conv.deformable_groups == 1 for conv in convs)
    assert all(conv.offset_lr_multiplier == pytest.approx(0.1) for conv in convs)


@pytest.mark.parametrize("model_id,stages,expected", [
    (18, [5], 4), (18, [], 0), (50, [3, 4, 5], 13)])
def test_deformable_stages(model_id, stages, expected):
    model = DeformableResNet(model_id=model_id, deformable_stages=stages, input_specs=SPEC)
    assert len(_deformable_convs(model)) == expected


def test_dcnv1_and_groups_shape_the_offset_branch():
    model = DeformableResNet(model_id=18, deformable_stages=[5], modulated=False,
                             deformable_groups=2, input_specs=SPEC)
    conv = _deformable_convs(model)[0]
    # 2 coordinates x 9 taps x 2 groups, no mask channels.
    assert conv.offset_kernel.shape[-1] == 2 * 9 * 2
    assert not conv.modulated


def test_rejects_unknown_stages():
    with pytest.raises(ValueError, match="deformable_stages"):
        DeformableResNet(model_id=18, deformable_stages=[6], input_specs=SPEC)


def test_zero_offsets_and_mask_one_half_at_initialisation(rng):
    model = DeformableResNet(model_id=18, input_specs=SPEC)  # DCNv2, conv3-conv5
    model(rng.standard_normal((2, 64, 64, 3)).astype("float32"), training=False)
    for conv in _deformable_convs(model):
        channels = conv.kernel.shape[2]
        offsets, mask = conv.offsets_and_mask(
            tf.constant(rng.standard_normal((1, 8, 8, channels)), tf.float32))
        np.testing.assert_array_equal(offsets.numpy(), 0.0)
        np.testing.assert_allclose(mask.numpy(), 0.5)
        assert mask.shape[-1] == 9


def test_regular_resnet_checkpoint_restores_and_reproduces_features(tmp_path, rng):
    """A tf.train.Checkpoint of Model Garden's ResNet restores into the deformable
    backbone (every regular variable found by name; only the offset branches are
    new), and with zero offsets and no modulation the features are the same."""
    tf_keras.utils.set_random_seed(0)
    regular = resnet.ResNet(model_id=18, input_specs=SPEC)
    _randomize_batch_norm(regular, rng)
    path = tf.train.Checkpoint(backbone=regular).write(str(tmp_path / "regular"))

    deformable = DeformableResNet(model_id=18, modulated=False, input_specs=SPEC)
    status = tf.train.Checkpoint(backbone=deformable).read(path)
    status.expect_partial()

    restored = {id(obj) for obj in
                tf.train.CheckpointView(path).match(
                    tf.train.Checkpoint(backbone=deformable)).values()}
    missing = [v.name for v in deformable.variables if id(v) not in restored]
    assert missing and all("offset_" in name for name in missing)
    assert len(missing) == 2 * len(_deformable_convs(deformable))

    regular_names = {name for name, _ in tf.train.list_variables(path)}
    path2 = tf.train.Checkpoint(backbone=deformable).write(str(tmp_path / "deformable"))
    extra = {name for name, _ in tf.train.list_variables(path2)} - regular_names
    assert extra and all("/offset_" in name for name in extra)

    x = tf.constant(rng.normal(size=(2, 64, 64, 3)), tf.float32)
    want, got = regular(x, training=False), deformable(x, training=False)
    for level in want:
        scale = float(tf.reduce_max(tf.abs(want[level])))
        assert scale > 0
        np.testing.assert_allclose(got[level].numpy(), want[level].numpy(),
                                   atol=1e-5 * scale, rtol=1e-4)


def test_config_roundtrip():
    model = DeformableResNet(model_id=18, deformable_stages=[4, 5], modulated=False,
                             input_specs=SPEC)
    config = model.get_config()
    assert config["deformable_stages"] == [4, 5] and config["modulated"] is False
    clone = DeformableResNet.from_config(config)
    assert len(_deformable_convs(clone)) == 8


@pytest.mark.parametrize("freeze_at", [1, 2, 4])
def test_freeze_at_freezes_the_stem_and_early_stages(freeze_at, rng):
    """Detectron's FREEZE_AT with frozen BN: the layers up to the end of the stem or
    of stage `freeze_at` hold no trainable weight and get no update; no moving
    statistics change in a training-mode call; the later stages still train."""
    model = DeformableResNet(model_id=18, input_specs=SPEC, bn_trainable=False,
                             freeze_at=freeze_at)
    names = [layer.name for layer in model.layers]
    if freeze_at == 1:  # the stem: the layers before the first residual block
        cut = next(i for i, layer in enumerate(model.layers)
                   if isinstance(layer, nn_blocks.ResidualBlock))
    else:
        cut = names.index(f"block_group_l{freeze_at}") + 1
    assert not any(layer.trainable_weights for layer in model.layers[:cut])
    assert all(layer.trainable_weights for layer in model.layers[cut:]
               if layer.weights)
    statistics = [v for v in model.weights if "moving_" in v.name]
    before = [v.numpy().copy() for v in statistics]
    with tf.GradientTape() as tape:
        outputs = model(tf.constant(rng.standard_normal((2, 64, 64, 3)), tf.float32),
                        training=True)
        loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in outputs.values()])
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)
    for value, variable in zip(before, statistics):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert DeformableResNet.from_config(model.get_config())._freeze_at == freeze_at


def test_rejects_unknown_freeze_at():
    with pytest.raises(ValueError, match=r"freeze_at must be 0, 1 \(the stem\) or a stage"):
        DeformableResNet(model_id=18, input_specs=SPEC, freeze_at=6)


def _conv5_3x3(model):
    """The 3x3 convolutions of conv5 (ResNet-50: its last 3 bottleneck blocks)."""
    blocks = [layer for layer in model.layers
              if isinstance(layer, nn_blocks.BottleneckBlock)]
    return [block._conv2 for block in blocks[-3:]]


def test_output_stride_16_dilates_conv5_and_keeps_the_other_stages(tmp_path):
    """conv5 at stride 16 (the paper's Faster R-CNN): its 3x3 convolutions dilated by
    2 and unstrided, stages 2-4 computing what the stride-32 network computes with the
    same weights; deformable conv5 at initialisation (zero offsets, DCNv1) computes
    what the regular dilated conv5 computes."""
    spec = tf_keras.layers.InputSpec(shape=[None, 64, 64, 3])
    kwargs = dict(model_id=50, depth_multiplier=0.25, input_specs=spec)
    strided = DeformableResNet(deformable_stages=(), **kwargs)
    dilated = DeformableResNet(deformable_stages=(), output_stride=16, **kwargs)
    deformable = DeformableResNet(deformable_stages=(5,), modulated=False,
                                  output_stride=16, **kwargs)
    _randomize_batch_norm(strided, np.random.default_rng(0))
    path = tf.train.Checkpoint(model=strided).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=dilated).read(path).assert_existing_objects_matched()
    # The offset branches are not in the checkpoint: they keep their zeros.
    tf.train.Checkpoint(model=deformable).read(path).expect_partial()
    assert dilated.output_specs["5"].as_list() == [None, 4, 4, 512]
    convs = _conv5_3x3(dilated)
    assert len(convs) == 3 and len(_conv5_3x3(deformable)) == 3
    for conv in convs + _conv5_3x3(deformable):
        assert tuple(conv.strides) == (1, 1) and tuple(conv.dilation_rate) == (2, 2)
    assert all(isinstance(c, dcn_layers.DeformConv2D) for c in _conv5_3x3(deformable))
    images = tf.random.stateless_normal([2, 64, 64, 3], seed=[1, 2])
    want = strided(images, training=False)
    got = dilated(images, training=False)
    for level in ("2", "3", "4"):
        np.testing.assert_array_equal(got[level].numpy(), want[level].numpy())
    assert want["5"].shape == (2, 2, 2, 512) and got["5"].shape == (2, 4, 4, 512)
    np.testing.assert_allclose(deformable(images, training=False)["5"].numpy(),
                               got["5"].numpy(), rtol=1e-4, atol=1e-4)


def test_output_stride_arguments():
    with pytest.raises(ValueError, match="output_stride must be one of"):
        DeformableResNet(model_id=50, output_stride=8, input_specs=SPEC)
    with pytest.raises(ValueError, match="ResNet-18 has basic blocks"):
        DeformableResNet(model_id=18, output_stride=16, input_specs=SPEC)
    config = Backbone(type="dcn_resnet", dcn_resnet=DcnResNet(model_id=50, output_stride=16))
    model = mg_backbones.factory.build_backbone(
        input_specs=SPEC, backbone_config=config,
        norm_activation_config=common.NormActivation())
    assert model.get_config()["output_stride"] == 16
    assert model.output_specs["5"].as_list() == [None, 4, 4, 2048]


# Trainable parameters of the ImageNet classifiers as published (torchvision's
# resnet50, resnet101, resnext101_32x8d, resnext101_64x4d) less their 2048 x 1000 fc
# layer and its bias: the backbones hold the same convolutions and BN affines.
PUBLISHED_BACKBONE_PARAMETERS = [
    (dict(model_id=50), 25_557_032 - 2_049_000),
    (dict(model_id=101), 44_549_160 - 2_049_000),
    (dict(model_id=101, cardinality=32, width_per_group=8), 88_791_336 - 2_049_000),
    (dict(model_id=101, cardinality=64, width_per_group=4), 83_455_272 - 2_049_000),
]


@pytest.mark.parametrize("kwargs, count", PUBLISHED_BACKBONE_PARAMETERS)
def test_resnet_and_resnext_match_the_published_parameter_counts(kwargs, count):
    model = DeformableResNet(deformable_stages=(), input_specs=SPEC, **kwargs)
    assert sum(int(v.shape.num_elements()) for v in model.trainable_variables) == count


def test_resnext_blocks_are_grouped_and_deformable_ones_compute_them_at_init(tmp_path):
    """ResNeXt 4x8d: conv2's 3x3 convolutions 32 wide in 4 groups, doubling per
    stage; a deformable ResNeXt (zero offsets, DCNv1) computes what the regular one
    computes with the same weights (TensorFlow's grouped convolution)."""
    kwargs = dict(model_id=50, cardinality=4, width_per_group=8, input_specs=SPEC)
    regular = DeformableResNet(deformable_stages=(), **kwargs)
    deformable = DeformableResNet(deformable_stages=(3, 4, 5), modulated=False, **kwargs)
    for stage, width in zip((2, 3, 4, 5), (32, 64, 128, 256)):
        for block in regular.stage_blocks(stage):
            assert block._conv1.filters == block._conv2.filters == width
            assert block._conv2.groups == 4
            assert block._conv2.kernel.shape == (3, 3, width // 4, width)
    grouped = [b._conv2 for s in (3, 4, 5) for b in deformable.stage_blocks(s)]
    assert all(isinstance(c, dcn_layers.DeformConv2D) and c.groups == 4 for c in grouped)
    _randomize_batch_norm(regular, np.random.default_rng(3))
    path = tf.train.Checkpoint(model=regular).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=deformable).read(path).expect_partial()
    images = tf.random.stateless_normal([2, 64, 64, 3], seed=[3, 4])
    want, got = regular(images, training=False), deformable(images, training=False)
    for level in ("2", "3", "4", "5"):
        np.testing.assert_allclose(got[level].numpy(), want[level].numpy(), rtol=1e-4,
                                   atol=1e-4)
    with pytest.raises(ValueError, match="needs bottleneck blocks"):
        DeformableResNet(model_id=18, cardinality=32, width_per_group=4, input_specs=SPEC)
    with pytest.raises(ValueError, match="must be positive"):
        DeformableResNet(model_id=50, cardinality=0, input_specs=SPEC)
