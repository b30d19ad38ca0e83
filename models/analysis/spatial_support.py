"""The deformable Mask R-CNN as nodes for `keras_dcn.analysis` (Section 2 of the paper).

* `run_params(model_dir)`: the experiment of a run folder, read from its
  `params.yaml` (written by `models.training.keras_trainer` and Model Garden's trainer;
  the demo's `export/params.yaml` also works).
* `analysis_model_config(model_config, probe_stages)`: the config the analysis builds.
  Effective sampling locations need the sampling locations of every probed layer as
  an input of the op: a probed stage that the variant keeps regular becomes
  deformable, unmodulated, with its zero-initialised offset branch (no checkpoint
  holds one), and RoIAlign becomes deformable RoI pooling with zero offsets and no
  modulation. Both compute exactly what the regular layers compute (the op with zero
  offsets is the convolution / RoIAlign), so the analysis sees the trained regular
  network, with gradients for its fixed grid.
* `load_model(params, checkpoint)`: builds that model (inference branches, the
  detection head's fc features reachable) and restores a checkpoint into it.
* `level_stride(model_config, level)`: the stride of a backbone stage's map in input
  pixels (`2 ** level`, except conv5 of a backbone with `output_stride` 16: 16, as
  in the paper's Faster R-CNN, whose conv5 nodes Section 2 studies).
* `backbone_node(model, level, position)`: the backbone's output at stage `level`
  (5: the last layer of conv5, the paper's Figure 1) at one position, `[C]`.
* `roi_node(model, box)`: the Fast R-CNN head's last fc features ("2fc", Figure 2) of
  one box `(y1, x1, y2, x2)` in input pixels, `[fc_dims]`.

Nodes take float32 RGB images `[1, H, W, 3]` with values 0-255 at the model's input
size (`fit_image` scales and pads an image as Model Garden's preprocessing does) and
normalise them as Model Garden's input pipeline does, so the effective receptive field
is the gradient with respect to 0-255 pixel intensities.
"""

import os
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.vision.ops import preprocess_ops

from keras_dcn import analysis
from models.common import runtime
from models.configs import maskrcnn as dcn_config
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.modeling import factory

PARAMS_FILES = ("params.yaml", os.path.join("export", "params.yaml"))


def run_params(model_dir: str, experiment: str = SYNTHETIC_EXPERIMENT,
               *overrides) -> cfg.ExperimentConfig:
    """`experiment` overridden by the run folder's `params.yaml`, then `overrides`."""
    for name in PARAMS_FILES:
        path = os.path.join(model_dir, name)
        if tf.io.gfile.exists(path):
            return runtime.experiment_params(experiment, path, *overrides)
    raise FileNotFoundError(
        f"no params.yaml in {model_dir} (looked for {', '.join(PARAMS_FILES)}): "
        "train it with models.demo, models.ablation, models.train or models.analyze")


def analysis_model_config(model_config: dcn_config.DcnMaskRCNN,
                          probe_stages: Sequence[int] = (5,)) -> dcn_config.DcnMaskRCNN:
    """The resolved `model_config` with `probe_stages` and the box RoI aligner made
    deformable where they are regular (zero offsets; see the module doc)."""
    resolved = dcn_config.resolve_variant(model_config)
    if resolved.backbone.type != "dcn_resnet":
        raise ValueError("the analysis needs backbone.type 'dcn_resnet', got "
                         f"{resolved.backbone.type!r}")
    backbone = resolved.backbone.dcn_resnet
    stages = set(backbone.deformable_stages)
    probe = {int(s) for s in probe_stages}
    if not probe <= {2, 3, 4, 5}:
        raise ValueError(f"probe_stages must be a subset of (2, 3, 4, 5), got {probe_stages}")
    override = {"variant": dcn_config.CUSTOM}
    if probe - stages:
        if stages and backbone.modulated:
            raise ValueError(
                f"probe_stages {sorted(probe)} include regular stages of a modulated backbone "
                f"(deformable stages {sorted(stages)}); probe a subset of them")
        override["backbone"] = {"dcn_resnet": {"deformable_stages": sorted(stages | probe),
                                               "modulated": False}}
    if not resolved.roi_aligner.deformable:
        override["roi_aligner"] = {"deformable": True, "modulated": False}
    return resolved.replace(**override)


def level_stride(model_config: dcn_config.DcnMaskRCNN, level: int) -> int:
    """Stride in input pixels of backbone stage `level`'s output (see module doc)."""
    backbone = model_config.backbone
    output_stride = backbone.dcn_resnet.output_stride if backbone.type == "dcn_resnet" else 32
    return min(2 ** int(level), output_stride)


def load_model(params: cfg.ExperimentConfig, checkpoint: str,
               probe_stages: Sequence[int] = (5,)):
    """The model of `analysis_model_config(params.task.model, probe_stages)` with the
    weights of `checkpoint` (a file or a run folder); layers added for the analysis
    keep their zero offset branches."""
    model_config = params.task.model
    analysed = analysis_model_config(model_config, probe_stages)
    input_size = list(model_config.input_size)
    model = factory.build_maskrcnn(
        input_specs=tf_keras.layers.InputSpec(shape=[None] + input_size),
        model_config=analysed, training_branches=False, feature_head=True)
    # A symbolic call creates every variable of the inference path.
    model(tf_keras.Input(input_size), image_shape=tf_keras.Input([2]), training=False)
    status = tf.train.Checkpoint(model=model).read(runtime.latest_checkpoint(checkpoint))
    status.expect_partial()
    trained = dcn_config.resolve_variant(model_config)
    if analysed.backbone == trained.backbone and analysed.roi_aligner == trained.roi_aligner:
        status.assert_existing_objects_matched()  # nothing was added: all must restore
    return model


def normalize(images: tf.Tensor) -> tf.Tensor:
    """0-255 RGB `[B, H, W, 3]` -> the backbone's input (Model Garden's normalisation)."""
    mean = tf.constant(preprocess_ops.MEAN_RGB, tf.float32)
    std = tf.constant(preprocess_ops.STDDEV_RGB, tf.float32)
    return (tf.cast(images, tf.float32) - mean) / std


def fit_image(image: np.ndarray, input_size: Sequence[int]) -> Tuple[np.ndarray, float]:
    """`image` uint8 `[h, w, 3]` scaled to fit `input_size` `(H, W)` and padded
    bottom / right with the mean colour (Model Garden's resize); returns
    `(uint8 [H, W, 3], scale)`."""
    height, width = int(input_size[0]), int(input_size[1])
    scale = min(height / image.shape[0], width / image.shape[1])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    resized = image if size == image.shape[1::-1] else cv2.resize(
        image, size, interpolation=cv2.INTER_LINEAR)
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = np.round(preprocess_ops.MEAN_RGB).astype(np.uint8)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    return canvas, scale


def backbone_node(model, level: int, position: Tuple[int, int]):
    """`node(images [1, H, W, 3]) -> [C]`: the backbone's level-`level` output at
    `position` `(row, col)` of that level's map."""
    row, col = (int(v) for v in position)

    def node(images):
        features = model.backbone(normalize(images), training=False)
        if str(level) not in features:
            raise ValueError(f"level must be one of the backbone's levels "
                             f"{sorted(features)}, got {level!r}")
        level_map = features[str(level)]
        if not (0 <= row < level_map.shape[1] and 0 <= col < level_map.shape[2]):
            raise ValueError(f"position {(row, col)} lies outside the level-{level} map "
                             f"{tuple(level_map.shape[1:3])}")
        return level_map[0, row, col]

    return node


def roi_node(model, box: Sequence[float]):
    """`node(images [1, H, W, 3]) -> [fc_dims]`: the detection head's last fc features
    of `box` `(y1, x1, y2, x2)` (input pixels), pooled by the box RoI aligner."""
    box = [float(v) for v in box]
    if len(box) != 4 or not (box[2] >= box[0] and box[3] >= box[1]):
        raise ValueError(f"box must be (y1, x1, y2, x2) with y2 >= y1 and x2 >= x1, got {box}")
    boxes = tf.constant([[box]], tf.float32)

    def node(images):
        _, features = model._get_backbone_and_decoder_features(normalize(images))
        pooled = model.roi_aligner(features, boxes, training=False)
        return model.detection_head[0].embed(pooled, training=False)[0, 0]

    return node


def probed_layers(model, stage: Optional[int] = None):
    """`(convs, pools)`: the deformable convolutions of the backbone (of stage `stage`
    only, when given) and the box aligner's deformable RoI pooling layer (empty when
    it has none)."""
    backbone = model.backbone
    convs = analysis.deformable_layers(backbone)
    if stage is not None:
        in_stage = {id(layer) for block in backbone.stage_blocks(stage)
                    for layer in analysis.deformable_layers(block)}
        convs = [conv for conv in convs if id(conv) in in_stage]
    pool = getattr(model.roi_aligner, "pool", None)
    return convs, [pool] if pool is not None else []
