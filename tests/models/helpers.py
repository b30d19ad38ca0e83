"""Helpers shared by the Mask R-CNN tests: checkpoints read back by object-graph key."""

import os

import numpy as np
import tensorflow as tf

from keras_dcn import tf_keras as dcn_layers


def checkpoint_values(path):
    """`{key: value}` of the variables of a checkpoint (object-graph keys)."""
    reader = tf.train.load_checkpoint(path)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")}


def assert_backbone_restored(backbone, checkpoint, work_dir):
    """Asserts that `backbone` holds what the checkpoint of a regular backbone (saved as
    `tf.train.Checkpoint(backbone=...)`) holds: the backbone is written out and read
    back by key, every variable of the checkpoint has found its place with its value,
    and the only others, the offset kernel and bias of each `DeformConv2D`, are 0."""
    restored = checkpoint_values(tf.train.Checkpoint(backbone=backbone).write(
        os.path.join(work_dir, "restored_backbone")))
    regular = {key: value for key, value in checkpoint_values(checkpoint).items()
               if key.startswith("backbone/")}
    deformable = [m for m in backbone.submodules if isinstance(m, dcn_layers.DeformConv2D)]
    branch = {key for key in restored if "/offset_kernel/" in key or "/offset_bias/" in key}
    assert deformable and len(branch) == 2 * len(deformable)
    assert len(restored) == len(backbone.variables)
    assert set(restored) - branch == set(regular)
    for key in regular:
        np.testing.assert_array_equal(restored[key], regular[key], err_msg=key)
    for key in branch:
        assert not np.any(restored[key]), key
