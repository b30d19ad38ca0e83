"""models.training.keras_trainer: the validation split parsed as training data, the
step timer, checkpoints at the interval and at the end, `train` overfitting a tiny
set to a box AP that chance cannot reach, and a bfloat16 run (resuming and
distribution run in test_train_lib.py)."""

import os
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.evaluation import coco
from models.training import keras_trainer


def test_validation_loss_data_is_the_validation_split_without_augmentation(
        tiny_overrides):
    overrides = tiny_overrides("dcnv2")
    overrides["task"]["train_data"]["parser"] = {
        "aug_rand_hflip": True, "aug_scale_min": 0.5, "aug_scale_max": 2.0}
    overrides["task"]["validation_data"]["global_batch_size"] = 3
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    data = keras_trainer.validation_loss_data(params)
    assert data.input_path == params.task.validation_data.input_path
    assert data.global_batch_size == 3
    assert data.is_training  # parsed with training targets, for the losses
    parser = data.parser
    assert (parser.aug_rand_hflip, parser.aug_rand_vflip, parser.aug_scale_min,
            parser.aug_scale_max) == (False, False, 1.0, 1.0)
    assert params.task.train_data.parser.aug_rand_hflip  # the config is left as it was


def test_step_timer_median_skips_the_first_steps(monkeypatch):
    """Durations are the clock differences between batch begin and end; the median
    leaves out the first `skip` (tracing), unless nothing else is left."""
    ticks = iter([0.0, 9.0, 10.0, 19.0, 20.0, 21.0, 30.0, 33.0, 40.0, 42.0])
    monkeypatch.setattr(keras_trainer.time, "perf_counter", lambda: next(ticks))
    timer = keras_trainer.StepTimer()
    assert np.isnan(timer.median())
    for step in range(5):
        timer.on_train_batch_begin(step)
        timer.on_train_batch_end(step)
    assert timer.durations == [9.0, 9.0, 1.0, 3.0, 2.0]
    assert timer.median(skip=2) == 2.0
    assert timer.median(skip=5) == 3.0  # all of them


def test_checkpoints_every_interval_and_at_the_end(tmp_path):
    """Steps 1 to 7 with interval 3: `ckpt-3` and `ckpt-6`, then `ckpt-7` at the end;
    training stops at the last step."""
    step = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step), str(tmp_path),
                                         max_to_keep=None)
    callback = keras_trainer._CheckpointEvery(manager, interval=3, last_step=7)
    model = types.SimpleNamespace(optimizer=types.SimpleNamespace(iterations=step),
                                  stop_training=False)
    callback.set_model(model)
    stopped = []
    for batch in range(7):
        step.assign_add(1)
        callback.on_train_batch_end(batch)
        stopped.append(model.stop_training)
    callback.on_train_end()
    callback.on_train_end()  # the last step is not written twice
    assert stopped == [False] * 6 + [True]
    assert [os.path.basename(path) for path in manager.checkpoints] == [
        "ckpt-3", "ckpt-6", "ckpt-7"]
    reader = tf.train.load_checkpoint(os.path.join(str(tmp_path), "ckpt-6"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 6


# A detector that does not look at the image assigns each box a class independent of
# the object in it: with 6 equally likely classes, 1 detection in 6 is of the right
# class, so its precision, and with it its AP at IoU 0.5, stays near 1/6 even with
# perfect boxes. The tiny run below must reach far above that.
CHANCE_AP50 = 1 / 6
STEPS = 300


@pytest.mark.slow
def test_tiny_run_overfits_its_training_images_above_chance(tiny_data, tiny_overrides,
                                                            tmp_path):
    """DCNv2 trained with `train` for 300 steps on the 6 training images (no
    augmentation), evaluated on the same images: box AP50 at least 0.4 and mask AP50
    above chance (a run of this seed reached 0.67 and 0.32 on an AVX-512 machine). About
    two minutes."""
    overrides = tiny_overrides("dcnv2", train_steps=STEPS)
    task = overrides["task"]
    task["train_data"]["parser"] = {"aug_rand_hflip": False, "aug_scale_min": 1.0,
                                    "aug_scale_max": 1.0}
    task["validation_data"]["input_path"] = tiny_data["train"]
    task["annotation_file"] = str(tiny_data["root"] / "annotations" /
                                  "instances_train.json")
    learning_rate = 0.04
    overrides["trainer"].update(
        steps_per_loop=30, checkpoint_interval=STEPS, validation_steps=3,
        optimizer_config={
            "learning_rate": {"stepwise": {"boundaries": [STEPS // 2, STEPS],
                                           "values": [learning_rate] * 2
                                           + [learning_rate / 10]}},
            "warmup": {"linear": {"warmup_steps": 10,
                                  "warmup_learning_rate": learning_rate / 10}}})
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    tf_keras.utils.set_random_seed(0)
    model, _ = keras_trainer.train(params, str(tmp_path / "run"), validate=False,
                                   verbose=0)
    assert int(model.optimizer.iterations.numpy()) == STEPS
    metrics = coco.evaluate_model(params, model)
    assert metrics["box"]["AP50"] >= 0.4, metrics
    assert metrics["mask"]["AP50"] > CHANCE_AP50, metrics


@pytest.mark.slow
def test_bfloat16_run_computes_in_bfloat16_and_keeps_float32_weights(tiny_overrides,
                                                                      tmp_path):
    """With `runtime.mixed_precision_dtype: bfloat16` the model's layers (the
    deformable convolutions and RoI pooling among them) compute in bfloat16, the
    losses stay finite, the variables and the checkpoint hold float32, and a float32
    model reads that checkpoint; the global policy is float32 again afterwards."""
    overrides = tiny_overrides("dcnv2", train_steps=2)
    overrides["runtime"] = {"mixed_precision_dtype": "bfloat16"}
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    model, history = keras_trainer.train(params, str(tmp_path / "run"), validate=False,
                                         verbose=0)
    assert tf_keras.mixed_precision.global_policy().name == "float32"
    policies = {layer.dtype_policy.name for layer in model.submodules
                if isinstance(layer, tf_keras.layers.Layer)}
    assert "mixed_bfloat16" in policies
    deformable = [layer for layer in model.submodules
                  if type(layer).__name__ in ("DeformConv2D", "DeformRoIPool")]
    assert deformable and all(layer.compute_dtype == "bfloat16" for layer in deformable)
    assert all(np.isfinite(history.history["total_loss"]))
    assert {v.dtype for v in model.variables} == {tf.float32}

    float_params = runtime.experiment_params(SYNTHETIC_EXPERIMENT,
                                             tiny_overrides("dcnv2", train_steps=2))
    metrics = coco.evaluate(float_params, str(tmp_path / "run"))
    assert set(metrics["box"]) == set(coco.METRIC_KEYS)
