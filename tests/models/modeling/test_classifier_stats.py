"""models.modeling.classifier_stats: the Fast R-CNN classifier's statistics against a
count done in numpy, and their place in the task's logged values."""

import numpy as np
import tensorflow as tf

from models.modeling import classifier_stats


def _expected(logits, targets):
    predicted = logits.argmax(-1)
    foreground = targets > 0
    return {
        classifier_stats.FOREGROUND_FRACTION: foreground.mean(),
        classifier_stats.FOREGROUND_ACCURACY:
            (predicted[foreground] == targets[foreground]).mean() if foreground.any() else 0,
        classifier_stats.BACKGROUND_ACCURACY:
            (predicted[~foreground] == 0).mean() if (~foreground).any() else 0,
    }


def test_statistics_match_a_count_in_numpy(rng):
    for _ in range(5):
        logits = rng.normal(size=(3, 16, 7)).astype(np.float32)
        targets = rng.choice(7, size=(3, 16), p=[0.6] + [0.4 / 6] * 6).astype(np.int32)
        # Some RoIs predicted right, so both accuracies are away from 0.
        right = rng.random((3, 16)) < 0.5
        logits[right, targets[right]] += 10.0
        got = classifier_stats.classifier_statistics(tf.constant(logits), tf.constant(targets))
        for name, value in _expected(logits, targets).items():
            np.testing.assert_allclose(float(got[name]), value, rtol=1e-6, err_msg=name)


def test_a_batch_without_foreground_gives_zero_foreground_accuracy():
    logits = np.zeros((1, 4, 3), np.float32)
    logits[..., 0] = 1.0
    got = classifier_stats.classifier_statistics(tf.constant(logits),
                                                 tf.zeros((1, 4), tf.int32))
    assert float(got[classifier_stats.FOREGROUND_FRACTION]) == 0.0
    assert float(got[classifier_stats.FOREGROUND_ACCURACY]) == 0.0
    assert float(got[classifier_stats.BACKGROUND_ACCURACY]) == 1.0
