"""Trains a Model Garden Mask R-CNN experiment with Keras `model.fit`.

The model is `DcnMaskRCNNTask.build_model()` (a `DcnMaskRCNNModel`, built under the
mixed-precision policy of `runtime.mixed_precision_dtype`), the
optimizer and learning-rate schedule come from `params.trainer.optimizer_config`
(Model Garden's optimizer factory), batches from the task's input pipeline
(`distribute_datasets_from_function`, so each replica reads its share). One Keras
epoch is `trainer.steps_per_loop` steps; training stops at `trainer.train_steps`.

The experiment goes to `model_dir/params.yaml` (as Model Garden's trainer writes
it), so the run folder alone rebuilds the model (`models.analysis` does).
Checkpoints `model_dir/ckpt-<step>` hold `global_step`, `model` and `optimizer` (the
layout of Model Garden's trainer: either trainer resumes the other's runs, and
`models.evaluate` / `models.export` read both) and are
written every `trainer.checkpoint_interval` steps and at the end; a run restarted
with the same `model_dir` resumes from the newest one that loads
(`models.common.checkpoint_recovery`), once it is known to fit the model
(`models.common.checkpoint_compat`). With `validate`, the
validation split (parsed like training data, without augmentation) gives a
validation loss each epoch (`DcnMaskRCNNModel.test_step`). The loss history is
appended to `model_dir/keras_history.csv` and written to TensorBoard, in the folders
Model Garden's trainer uses (`model_dir/train`, `model_dir/validation`).
"""

import math
import os
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.core import task_factory
from official.core import train_utils

from models import registry_imports  # noqa: F401  the task of the experiments
from models.common import checkpoint_compat
from models.common import checkpoint_recovery
from models.common import runtime
from models.data import record_files

HISTORY_NAME = "keras_history.csv"


def validation_loss_data(params: cfg.ExperimentConfig):
    """Data config of the validation split parsed as training data (no augmentation)."""
    task_config = params.task
    return task_config.train_data.replace(
        input_path=task_config.validation_data.input_path,
        global_batch_size=task_config.validation_data.global_batch_size,
        parser={"aug_rand_hflip": False, "aug_rand_vflip": False, "aug_scale_min": 1.0,
                "aug_scale_max": 1.0})


class _CheckpointEvery(tf_keras.callbacks.Callback):
    """Saves `ckpt-<step>` every `interval` steps and at the end; stops at `last_step`."""

    def __init__(self, manager: tf.train.CheckpointManager, interval: int,
                 last_step: int):
        super().__init__()
        self._manager = manager
        self._interval = max(1, interval)
        self._last_step = last_step

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _save(self, step):
        if self._manager.latest_checkpoint != os.path.join(self._manager.directory,
                                                           f"ckpt-{step}"):
            self._manager.save(checkpoint_number=step)

    def on_train_batch_end(self, batch, logs=None):
        """Saves every `interval` steps; stops training at `last_step`."""
        step = self._step()
        if step % self._interval == 0:
            self._save(step)
        if step >= self._last_step:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        """Saves the last step."""
        self._save(self._step())


class StepTimer(tf_keras.callbacks.Callback):
    """Records the wall time of every training step (seconds, in `durations`)."""

    def __init__(self):
        super().__init__()
        self.durations = []
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        """Starts the step's clock."""
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        """Records the step's duration."""
        self.durations.append(time.perf_counter() - self._start)

    def median(self, skip: int = 3) -> float:
        """Median step time, without the first `skip` steps (tracing, warm-up)."""
        kept = self.durations[skip:] or self.durations
        return float(np.median(kept)) if kept else float("nan")


def train(params: cfg.ExperimentConfig, model_dir: str,
          strategy: Optional[tf.distribute.Strategy] = None, validate: bool = True,
          verbose: int = 1, callbacks=()):
    """Runs `fit` to `params.trainer.train_steps`; returns `(model, history)`.

    Args:
      params: a Mask R-CNN experiment (task `DcnMaskRCNNTask`).
      model_dir: checkpoints and logs; an existing checkpoint there is resumed.
      strategy: distribution strategy (default: the current one).
      validate: compute a validation loss each epoch.
      verbose: Keras verbosity (1: progress bar, 2: one line per epoch).
      callbacks: extra Keras callbacks.
    """
    strategy = strategy or tf.distribute.get_strategy()
    trainer = params.trainer
    tf.io.gfile.makedirs(model_dir)
    latest = checkpoint_recovery.recover(model_dir)
    with strategy.scope(), runtime.mixed_precision(params.runtime.mixed_precision_dtype):
        task = task_factory.get_task(params.task, logging_dir=model_dir)
        model = task.build_model()
        optimizer = task.create_optimizer(trainer.optimizer_config, params.runtime)
        model.compile(optimizer=optimizer)
        # Model Garden's trainer layout: its global step is the optimizer's step here.
        checkpoint = tf.train.Checkpoint(global_step=optimizer.iterations, model=model,
                                         optimizer=optimizer)
        manager = tf.train.CheckpointManager(checkpoint, model_dir,
                                             max_to_keep=trainer.max_to_keep)
        if latest:
            checkpoint_compat.check_model_fits(model, latest, params)
            checkpoint.restore(latest).expect_partial()
            logging.info("Resumed from %s", latest)
        else:
            task.initialize(model)
    # After the check above, which compares the model with the run's params.yaml.
    train_utils.serialize_config(params, model_dir)

    done = int(optimizer.iterations.numpy())
    steps_per_epoch = max(1, min(trainer.steps_per_loop, trainer.train_steps))
    epochs = math.ceil(trainer.train_steps / steps_per_epoch)
    train_data = strategy.distribute_datasets_from_function(
        lambda context: task.build_inputs(params.task.train_data, context))
    fit_args = {}
    if validate:
        val_config = validation_loss_data(params)
        steps = trainer.validation_steps
        if steps is None or steps <= 0:
            steps = max(1, record_files.count(val_config.input_path)
                        // val_config.global_batch_size)
        fit_args.update(
            validation_data=strategy.distribute_datasets_from_function(
                lambda context: task.build_inputs(val_config, context)),
            validation_steps=steps)
    history = model.fit(
        train_data,
        epochs=epochs,
        initial_epoch=done // steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=[_CheckpointEvery(manager, trainer.checkpoint_interval,
                                    trainer.train_steps),
                   tf_keras.callbacks.CSVLogger(
                       os.path.join(model_dir, HISTORY_NAME), append=True),
                   # Losses every epoch, by epoch and by training step.
                   tf_keras.callbacks.TensorBoard(model_dir, write_graph=False,
                                                  profile_batch=0,
                                                  update_freq=steps_per_epoch),
                   *callbacks],
        verbose=verbose,
        **fit_args)
    return model, history
