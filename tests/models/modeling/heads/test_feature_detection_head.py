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
