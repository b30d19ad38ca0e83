"""ResNet whose 3x3 convolutions in chosen stages are deformable (DCNv1 / DCNv2).

`DeformableResNet` is Model Garden's `ResNet` (depths 18, 34, 50, 101, ...) built
from `DeformableResidualBlock` / `DeformableBottleneckBlock`: Model Garden's blocks
whose 3x3 convolution `_conv2` becomes a `keras_dcn.tf_keras.DeformConv2D` in the
stages listed in `deformable_stages` (2 = conv2 ... 5 = conv5; the paper's DCNv2 uses
conv3-conv5). In a bottleneck block (ResNet-50/101, the paper's backbones) that is
the block's only 3x3 convolution; a basic block (ResNet-18/34) has two, `_conv1`
(with the block's stride) and `_conv2`, and both become deformable. Either way every
3x3 convolution of those stages is deformable, as in the paper. ResNet-50 has 4 + 6 +
3 = 13 such convolutions in conv3-conv5; the paper counts 12.

Each deformable convolution owns a zero-initialised offset (and, when `modulated`,
mask) branch, so at initialisation offsets are 0 and masks 0.5 (DCNv2) or 1 (DCNv1).
Its `kernel` has the `Conv2D` layout and the same checkpoint name as `Conv2D.kernel`,
so a checkpoint of Model Garden's regular `ResNet` restores into this backbone;
only `offset_kernel` / `offset_bias` find no value there and keep their zeros.

With `cardinality` and `width_per_group` the bottleneck blocks become ResNeXt blocks
(grouped 3x3 convolutions, deformable ones included): ResNeXt-101 64x4d, one of the
paper's Table 4 backbones, is `model_id=101, cardinality=64, width_per_group=4`.

Input `[B, H, W, 3]`; output `{'2': [B, H/4, W/4, C2], ..., '5': [B, H/32, W/32, C5]}`
as Model Garden's ResNet. With `output_stride=16` (bottleneck ResNets only) conv5
keeps stride 16 and dilates its 3x3 convolutions by 2, deformable or not, as the
paper's Faster R-CNN does: `'5'` is then `[B, H/16, W/16, C5]`.
"""

import functools
from typing import Optional, Sequence

import tf_keras

from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import resnet
from official.vision.modeling.layers import nn_blocks

from keras_dcn import tf_keras as dcn_layers

PACKAGE = "keras_dcn_models"
STAGES = (2, 3, 4, 5)
OUTPUT_STRIDES = (16, 32)


class _DeformableBlockMixin:
    """Deformable settings of a Model Garden block and the factory of its deformable
    3x3 convolutions; put first in the bases, before the Model Garden block."""

    def __init__(self, *args, deformable: bool = True, modulated: bool = True,
                 deformable_groups: int = 1, offset_lr_multiplier: float = 0.1,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._deformable = bool(deformable)
        self._modulated = bool(modulated)
        self._deformable_groups = int(deformable_groups)
        self._offset_lr_multiplier = float(offset_lr_multiplier)

    def _deform_conv(self, strides, dilation_rate=1, padding="same", filters=None,
                     groups=1):
        """A `DeformConv2D` with the arguments Model Garden gives the 3x3 `Conv2D`."""
        return dcn_layers.DeformConv2D(
            filters=filters or self._filters,
            kernel_size=3,
            strides=strides,
            padding=padding,
            dilation_rate=dilation_rate,
            groups=groups,
            use_bias=False,
            deformable_groups=self._deformable_groups,
            modulated=self._modulated,
            offset_lr_multiplier=self._offset_lr_multiplier,
            kernel_initializer=tf_utils.clone_initializer(self._kernel_initializer),
            kernel_regularizer=self._kernel_regularizer)

    def get_config(self):
        """The block's config with the deformable settings."""
        return {
            **super().get_config(),
            "deformable": self._deformable,
            "modulated": self._modulated,
            "deformable_groups": self._deformable_groups,
            "offset_lr_multiplier": self._offset_lr_multiplier,
        }


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class DeformableResidualBlock(_DeformableBlockMixin, nn_blocks.ResidualBlock):
    """Model Garden's basic residual block whose two 3x3 convolutions are deformable.

    `[B, H, W, Cin]` -> `[B, H/s, W/s, filters]`. With `deformable=False` it is
    exactly `nn_blocks.ResidualBlock`.
    """

    def build(self, input_shape):
        """Model Garden's layers, then the deformable 3x3 convolutions in their place."""
        super().build(input_shape)
        if self._deformable:
            # Model Garden pads explicitly before a 'valid' _conv1 when asked to.
            self._conv1 = self._deform_conv(
                self._strides, padding="valid" if self._use_explicit_padding else "same")
            self._conv2 = self._deform_conv(1)


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class DeformableBottleneckBlock(_DeformableBlockMixin, nn_blocks.BottleneckBlock):
    """Model Garden's bottleneck block with a deformable 3x3 convolution, optionally a
    ResNeXt block (Xie et al. 2017): its 1x1 and grouped 3x3 convolutions
    `filters * cardinality * width_per_group / 64` wide, in `cardinality` groups.

    `[B, H, W, Cin]` -> `[B, H/s, W/s, 4 * filters]`. With `deformable=False`,
    `cardinality=1` and `width_per_group=64` it is exactly `nn_blocks.BottleneckBlock`.
    """

    def __init__(self, *args, cardinality: int = 1, width_per_group: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self._cardinality = int(cardinality)
        self._width_per_group = int(width_per_group)

    def build(self, input_shape):
        """Model Garden's layers, then the deformable or ResNeXt convolutions in place
        of its 1x1 and 3x3 ones."""
        super().build(input_shape)
        width = self._filters * self._cardinality * self._width_per_group // 64
        conv = functools.partial(
            tf_keras.layers.Conv2D, filters=width, use_bias=False,
            kernel_initializer=tf_utils.clone_initializer(self._kernel_initializer),
            kernel_regularizer=self._kernel_regularizer,
            bias_regularizer=self._bias_regularizer)
        if width != self._filters:
            self._conv1 = conv(kernel_size=1)
        if self._deformable:
            self._conv2 = self._deform_conv(self._strides, dilation_rate=self._dilation_rate,
                                            filters=width, groups=self._cardinality)
        elif width != self._filters or self._cardinality != 1:
            self._conv2 = conv(kernel_size=3, strides=self._strides,
                               dilation_rate=self._dilation_rate, padding="same",
                               groups=self._cardinality)

    def get_config(self):
        """The block's config with the ResNeXt settings."""
        return {**super().get_config(), "cardinality": self._cardinality,
                "width_per_group": self._width_per_group}


_DEFORMABLE_BLOCKS = {
    nn_blocks.ResidualBlock: DeformableResidualBlock,
    nn_blocks.BottleneckBlock: DeformableBottleneckBlock,
}


def _stage_of(block_group_name: str) -> int:
    """Stage number of Model Garden's block group name `block_group_l{stage}`."""
    return int(block_group_name.rsplit("_l", 1)[1])


@tf_keras.utils.register_keras_serializable(package=PACKAGE)
class DeformableResNet(resnet.ResNet):
    """Model Garden's ResNet with deformable 3x3 convolutions in `deformable_stages`.

    Args:
      model_id: ResNet depth (18, 34, 50, 101, ...).
      deformable_stages: stages (2..5) made deformable; () gives the plain ResNet
        (same layers, variables and outputs as `resnet.ResNet`).
      modulated: DCNv2 modulated convolutions (True) or DCNv1 (False).
      deformable_groups: offset groups per deformable convolution.
      offset_lr_multiplier: learning-rate factor of the offset / mask branches.
      freeze_at: 0 trains every layer; 1 freezes the stem, 2..5 the stem and the
        stages up to that one (`trainable` False: weights not trained, batch
        normalisation in inference mode), as Detectron's FREEZE_AT.
      output_stride: 32, or 16: conv5 does not downsample and its 3x3
        convolutions are dilated by 2 (bottleneck blocks only).
      cardinality, width_per_group: ResNeXt's groups of the 3x3 convolutions and
        their width in conv2 (1 and 64: ResNet; ResNeXt-101 64x4d: 64 and 4;
        bottleneck blocks only).
      **kwargs: the arguments of `official.vision.modeling.backbones.ResNet`.
    """

    def __init__(self, model_id: int, deformable_stages: Sequence[int] = (3, 4, 5),
                 modulated: bool = True, deformable_groups: int = 1,
                 offset_lr_multiplier: float = 0.1, freeze_at: int = 0,
                 output_stride: int = 32, cardinality: int = 1,
                 width_per_group: int = 64, **kwargs):
        stages = sorted({int(s) for s in deformable_stages})
        if not set(stages) <= set(STAGES):
            raise ValueError(
                f"deformable_stages must be a subset of {STAGES}, got {list(deformable_stages)}")
        if freeze_at not in (0, 1, *STAGES):
            raise ValueError(f"freeze_at must be 0, 1 (the stem) or a stage in {STAGES}, "
                             f"got {freeze_at!r}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, "
                             f"got {output_stride!r}")
        bottleneck = resnet.RESNET_SPECS[model_id][0][0] == "bottleneck"
        if output_stride == 16 and not bottleneck:
            raise ValueError("output_stride 16 dilates conv5's bottleneck blocks; "
                             f"ResNet-{model_id} has basic blocks (use 50 or deeper)")
        if cardinality < 1 or width_per_group < 1:
            raise ValueError("cardinality and width_per_group must be positive, got "
                             f"{cardinality} and {width_per_group}")
        self._grouped = (cardinality, width_per_group) != (1, 64)
        if self._grouped and not bottleneck:
            raise ValueError("ResNeXt (cardinality, width_per_group) needs bottleneck "
                             f"blocks; ResNet-{model_id} has basic blocks")
        # A frozenset: Keras' attribute tracking rejects an empty tuple before
        # `Model.__init__` has run.
        self._deformable_stages = frozenset(stages)
        self._modulated = bool(modulated)
        self._deformable_groups = int(deformable_groups)
        self._offset_lr_multiplier = float(offset_lr_multiplier)
        self._freeze_at = int(freeze_at)
        self._output_stride = int(output_stride)
        self._cardinality = int(cardinality)
        self._width_per_group = int(width_per_group)
        super().__init__(model_id=model_id, **kwargs)
        for layer in self._frozen_layers():
            layer.trainable = False

    def _frozen_layers(self):
        """The layers of the stem and of the stages up to `freeze_at`: those before the
        first block (the stem), then each stage's up to its `block_group_l{stage}`."""
        if self._freeze_at == 0:
            return []
        frozen = []
        for layer in self.layers:
            if self._freeze_at == 1 and isinstance(layer, tuple(_DEFORMABLE_BLOCKS)):
                break
            frozen.append(layer)
            if layer.name == f"block_group_l{self._freeze_at}":
                break
        return frozen

    def stage_blocks(self, stage: int) -> list:
        """The residual blocks of stage `stage` (2 = conv2 ... 5 = conv5), in order."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        blocks = [layer for layer in self.layers if isinstance(layer, tuple(_DEFORMABLE_BLOCKS))]
        repeats = [spec[2] for spec in resnet.RESNET_SPECS[self._model_id]]
        start = sum(repeats[:stage - STAGES[0]])
        return blocks[start:start + repeats[stage - STAGES[0]]]

    def _block_group(self, inputs, filters, strides, block_fn, block_repeats=1,
                     stochastic_depth_drop_rate=0.0, name="block_group"):
        """Model Garden's block group, with deformable blocks in deformable stages and
        conv5 dilated instead of strided at output stride 16."""
        stage = _stage_of(name)
        grouped = {"cardinality": self._cardinality,
                   "width_per_group": self._width_per_group} if self._grouped else {}
        if stage in self._deformable_stages or grouped:
            block_fn = functools.partial(
                _DEFORMABLE_BLOCKS[block_fn],
                deformable=stage in self._deformable_stages,
                modulated=self._modulated,
                deformable_groups=self._deformable_groups,
                offset_lr_multiplier=self._offset_lr_multiplier,
                **grouped)
        if stage == 5 and self._output_stride == 16:
            strides = 1
            block_fn = functools.partial(block_fn, dilation_rate=2)
        return super()._block_group(
            inputs, filters, strides, block_fn, block_repeats=block_repeats,
            stochastic_depth_drop_rate=stochastic_depth_drop_rate, name=name)

    def get_config(self):
        """Model Garden's ResNet config with the deformable settings."""
        config = super().get_config()
        config.update(
            deformable_stages=sorted(self._deformable_stages),
            modulated=self._modulated,
            deformable_groups=self._deformable_groups,
            offset_lr_multiplier=self._offset_lr_multiplier,
            freeze_at=self._freeze_at,
            output_stride=self._output_stride,
            cardinality=self._cardinality,
            width_per_group=self._width_per_group)
        return config


@factory.register_backbone_builder("dcn_resnet")
def build_dcn_resnet(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
    """Builds a `DeformableResNet` from a `Backbone` oneof whose type is `dcn_resnet`."""
    if backbone_config.type != "dcn_resnet":
        raise ValueError(f"Expected backbone type 'dcn_resnet', got {backbone_config.type!r}")
    cfg = backbone_config.get()
    return DeformableResNet(
        model_id=cfg.model_id,
        deformable_stages=cfg.deformable_stages,
        modulated=cfg.modulated,
        deformable_groups=cfg.deformable_groups,
        offset_lr_multiplier=cfg.offset_lr_multiplier,
        freeze_at=cfg.freeze_at,
        output_stride=cfg.output_stride,
        cardinality=cfg.cardinality,
        width_per_group=cfg.width_per_group,
        input_specs=input_specs,
        depth_multiplier=cfg.depth_multiplier,
        stem_type=cfg.stem_type,
        resnetd_shortcut=cfg.resnetd_shortcut,
        replace_stem_max_pool=cfg.replace_stem_max_pool,
        se_ratio=cfg.se_ratio,
        init_stochastic_depth_rate=cfg.stochastic_depth_drop_rate,
        scale_stem=cfg.scale_stem,
        activation=norm_activation_config.activation,
        use_sync_bn=norm_activation_config.use_sync_bn,
        norm_momentum=norm_activation_config.norm_momentum,
        norm_epsilon=norm_activation_config.norm_epsilon,
        kernel_regularizer=l2_regularizer,
        bn_trainable=cfg.bn_trainable)
