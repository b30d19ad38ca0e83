"""How the Fast R-CNN classifier is doing on the RoIs it trains on.

The classification loss alone hides what a young detector has learnt: early on it
calls every RoI background, and its loss then rises as the RPN improves and the
sampled RoIs hold more foreground. `classifier_statistics` splits the picture into
the foreground share of the sampled RoIs and the accuracy on foreground and on
background RoIs; the task logs them beside the losses (Keras history, TensorBoard).
"""

from typing import Dict

import tensorflow as tf

FOREGROUND_FRACTION = "frcnn_fg_fraction"
FOREGROUND_ACCURACY = "frcnn_fg_accuracy"
BACKGROUND_ACCURACY = "frcnn_bg_accuracy"
NAMES = (FOREGROUND_FRACTION, FOREGROUND_ACCURACY, BACKGROUND_ACCURACY)


def classifier_statistics(class_outputs: tf.Tensor, class_targets: tf.Tensor
                          ) -> Dict[str, tf.Tensor]:
    """Foreground share and accuracies of the sampled RoIs of a batch.

    Args:
      class_outputs: `[B, K, num_classes]` logits of the Fast R-CNN head.
      class_targets: `[B, K]` integer targets, 0 for background.

    Returns:
      float32 scalars by `NAMES`: the share of RoIs with a foreground target, and the
      share of foreground (background) RoIs whose arg-max class is their target (0
      when a batch has none).
    """
    targets = tf.cast(class_targets, tf.int32)
    correct = tf.cast(tf.equal(tf.argmax(class_outputs, axis=-1, output_type=tf.int32),
                               targets), tf.float32)
    foreground = tf.cast(targets > 0, tf.float32)
    background = 1.0 - foreground
    return {
        FOREGROUND_FRACTION: tf.reduce_mean(foreground),
        FOREGROUND_ACCURACY: tf.math.divide_no_nan(tf.reduce_sum(correct * foreground),
                                                   tf.reduce_sum(foreground)),
        BACKGROUND_ACCURACY: tf.math.divide_no_nan(tf.reduce_sum(correct * background),
                                                   tf.reduce_sum(background)),
    }
