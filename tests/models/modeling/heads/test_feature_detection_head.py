"""models.modeling.heads.feature_detection_head: the head restores a checkpoint of Model
Garden's `DetectionHead` and then computes what that head computes; `embed` gives the
fc features its predictors read, kept as `last_features`."""

import numpy as np
import tensorflow as tf
from official.vision.modeling.heads import instance_heads

from models.modeling.heads.feature_detection_head import FeatureDetectionHead

HEAD_ARGS = dict(num_classes=4, num_convs=1, num_filters=8, num_fcs=2, fc_dims=16)


def test_restores_a_detection_head_checkpoint_and_computes_the_same(tmp_path, rng):
    roi_features = tf.constant(rng.standard_normal((2, 3, 7, 7, 5)), tf.float32)
    regular = instance_heads.DetectionHead(**HEAD_ARGS)
    regular(roi_features, training=False)
    for variable in regular.variables:  # batch-norm statistics too
        variable.assign(rng.uniform(0.5, 1.5, variable.shape))
    path = tf.train.Checkpoint(head=regular).write(str(tmp_path / "head"))

    head = FeatureDetectionHead(**HEAD_ARGS)
    assert head.last_features is None
    head(roi_features, training=False)
    tf.train.Checkpoint(head=head).read(path).assert_existing_objects_matched()
    assert len(head.variables) == len(regular.variables)

    classes, boxes = head(roi_features, training=False)
    want_classes, want_boxes = regular(roi_features, training=False)
    assert classes.shape == (2, 3, 4) and boxes.shape == (2, 3, 16)
    np.testing.assert_allclose(classes, want_classes, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(boxes, want_boxes, rtol=1e-5, atol=1e-5)

    features = head.embed(roi_features, training=False)
    assert features.shape == (2, 3, 16)
    np.testing.assert_array_equal(head.last_features, features)
    np.testing.assert_allclose(head._classifier(features), want_classes, rtol=1e-5,
                               atol=1e-5)


def test_without_fc_norm_the_head_is_fc_relu_fc_relu(rng):
    """Detectron's 2fc head: no batch normalisation, so the features are
    relu(relu(x W1 + b1) W2 + b2) of the flattened RoI features, computed here in
    numpy from the head's weights."""
    args = dict(HEAD_ARGS, num_convs=0)
    head = FeatureDetectionHead(fc_norm=False, **args)
    roi_features = rng.standard_normal((2, 3, 7, 7, 5)).astype("float32")
    classes, _ = head(tf.constant(roi_features), training=True)
    assert not [v for v in head.variables if "batch_norm" in v.name]
    assert len(head.variables) == 2 * 2 + 2 * 2  # two fc, the class and box predictors
    fc1, fc2 = head._fcs
    for fc in (fc1, fc2):
        fc.bias.assign(rng.normal(0.0, 0.1, fc.bias.shape))
    x = roi_features.reshape(2, 3, -1)
    for fc in (fc1, fc2):
        x = np.maximum(x @ fc.kernel.numpy() + fc.bias.numpy(), 0)
    np.testing.assert_allclose(head.embed(tf.constant(roi_features), training=True), x,
                               rtol=1e-4, atol=1e-5)
    restored = FeatureDetectionHead.from_config(head.get_config())
    assert restored.get_config()["fc_norm"] is False
