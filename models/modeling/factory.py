"""Builds the deformable Mask R-CNN from Model Garden's components.

Model Garden's `build_maskrcnn` assembles backbone (here the `dcn_resnet` registered
in its backbone factory), FPN, RPN, RoI generator / samplers, heads and detection
generator from the resolved config; this module then swaps its RoI aligners for
`MultilevelDeformableROIAligner`s (deformable or plain RoIAlign, with the same sampling),
adds the R-CNN feature-mimicking branch when `mimic.enabled` (and training
branches are wanted), and returns a `DcnMaskRCNNModel` over the same components.
"""

from typing import Optional

import tf_keras

from official.vision.modeling import factory as mg_factory

from models.configs import maskrcnn as dcn_config
from models.modeling import maskrcnn_model
from models.modeling import rcnn_mimic
from models.modeling.backbones import dcn_resnet  # noqa: F401  registers `dcn_resnet`
from models.modeling.decoders import c4_c5  # noqa: F401  registers `c4_c5`
from models.modeling.heads import feature_detection_head
from models.modeling.layers.deform_roi_aligner import MultilevelDeformableROIAligner


def build_roi_aligner(aligner_config: dcn_config.DeformROIAligner,
                      l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None
                      ) -> tf_keras.layers.Layer:
    """The aligner a `DeformROIAligner` config describes: `[B, K, crop, crop, C]` crops."""
    return MultilevelDeformableROIAligner(
        crop_size=aligner_config.crop_size,
        sample_offset=aligner_config.sample_offset,
        deformable=aligner_config.deformable,
        modulated=aligner_config.modulated,
        sampling_ratio=aligner_config.sampling_ratio,
        aligned=aligner_config.aligned,
        gamma=aligner_config.gamma,
        hidden_units=aligner_config.hidden_units,
        offset_lr_multiplier=aligner_config.offset_lr_multiplier,
        kernel_regularizer=l2_regularizer,
        feature_level=aligner_config.feature_level,
        feature_stride=aligner_config.feature_stride)


def build_maskrcnn(input_specs: tf_keras.layers.InputSpec,
                   model_config: dcn_config.DcnMaskRCNN,
                   l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
                   training_branches: bool = True,
                   feature_head: bool = False,
                   **model_kwargs) -> maskrcnn_model.DcnMaskRCNNModel:
    """Builds the Mask R-CNN of `model_config` (its `variant` applied).

    Args:
      input_specs: `InputSpec` of the images, `[B, H, W, 3]`.
      model_config: a `DcnMaskRCNN` config.
      l2_regularizer: kernel regularizer of every layer (weight decay).
      training_branches: add the branches used in training only (R-CNN feature
        mimicking, when the config enables it); False for inference and export.
      feature_head: make the detection head a `FeatureDetectionHead` (same
        variables) even without mimicking, so its fc features can be computed on their
        own (`embed`; the spatial-support analysis uses them).
      **model_kwargs: extra constructor arguments of `DcnMaskRCNNModel` (`loss_fn`).

    Returns:
      The (unbuilt) model; call it once to create its variables.
    """
    resolved = dcn_config.resolve_variant(model_config)
    mimic_branch = training_branches and resolved.mimic.enabled
    if mimic_branch:
        # The backbone and FPN also run on the R-CNN branch's crops.
        input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, 3])
    template = mg_factory.build_maskrcnn(
        input_specs=input_specs, model_config=resolved, l2_regularizer=l2_regularizer)
    components = dict(template.get_config())
    components["roi_aligner"] = build_roi_aligner(resolved.roi_aligner, l2_regularizer)
    if resolved.include_mask:
        components["mask_roi_aligner"] = build_roi_aligner(
            resolved.mask_roi_aligner, l2_regularizer)
    fc_norm = resolved.detection_head.fc_norm
    if mimic_branch or feature_head or not fc_norm:
        head = components["detection_head"]
        if isinstance(head, (list, tuple)):
            raise ValueError("R-CNN feature mimicking, fc-feature access and "
                             "detection_head.fc_norm=False do not support cascade heads "
                             "(task.model.roi_sampler.cascade_iou_thresholds)")
        components["detection_head"] = feature_detection_head.FeatureDetectionHead(
            name=head.name, fc_norm=fc_norm, **head.get_config())
    if mimic_branch:
        settings = resolved.mimic
        components["mimic_branch"] = rcnn_mimic.RCNNMimicBranch(
            num_classes=resolved.num_classes,
            rois_per_image=settings.rois_per_image,
            roi_type=settings.roi_type,
            iou_threshold=settings.iou_threshold,
            crop_size=settings.crop_size,
            kernel_regularizer=l2_regularizer,
            name="rcnn_mimic")
        # The branch runs only in training; its classifier is made now, so that the
        # model has all its variables before a checkpoint is checked or restored.
        fc_dims = components["detection_head"].get_config()["fc_dims"]
        components["mimic_branch"].build([None, None, fc_dims])
    return maskrcnn_model.DcnMaskRCNNModel(
        **components, octave_anchor_scales=resolved.octave_anchor_scales, **model_kwargs)
