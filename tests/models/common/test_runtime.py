"""models.common.runtime: experiment params with overrides applied in order, and the
checkpoint of a run folder."""

import pytest
import tensorflow as tf

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT


def test_experiment_params_applies_overrides_in_order(tmp_path):
    config_file = tmp_path / "override.yaml"
    config_file.write_text("task:\n  model:\n    variant: dcnv1\ntrainer:\n  train_steps: 5\n")
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, str(config_file), None,
                                       {"task": {"model": {"variant": "regular"}}},
                                       "trainer.train_steps=7")
    assert params.task.model.variant == "regular"
    assert params.trainer.train_steps == 7
    with pytest.raises(ValueError):  # locked
        params.override({"trainer": {"train_steps": 8}})
    with pytest.raises(KeyError):  # strict
        runtime.experiment_params(SYNTHETIC_EXPERIMENT, {"task": {"no_such_field": 1}})


def test_latest_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        runtime.latest_checkpoint(str(tmp_path))
    checkpoint = tf.train.Checkpoint(step=tf.Variable(3))
    first = checkpoint.save(str(tmp_path / "ckpt"))
    second = checkpoint.save(str(tmp_path / "ckpt"))
    assert runtime.latest_checkpoint(str(tmp_path)) == second
    assert runtime.latest_checkpoint(first) == first
