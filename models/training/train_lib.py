"""Trains and / or evaluates an experiment with Model Garden's trainer or Keras `fit`.

`run_experiment(params, model_dir, mode, trainer)`: with `trainer='orbit'`, Model
Garden's own trainer (`official.core.train_lib.OrbitExperimentRunner`: Orbit
controller, checkpoints every `trainer.checkpoint_interval` steps, resumes from the
latest checkpoint in `model_dir`); with `trainer='keras'`, Keras `model.fit`
(`models.training.keras_trainer`) and, for modes with evaluation, then a COCO
evaluation of the last checkpoint (`models.evaluation.coco`). Either builds the model
under the mixed-precision policy of `runtime.mixed_precision_dtype`.
`cpu_replicas > 1` trains with a `MirroredStrategy` over that many logical CPU
devices.

With `runtime.distribution_strategy: multi_worker_mirrored` (workers in `TF_CONFIG`)
the chief writes the checkpoints to `model_dir` and every other worker to a
temporary folder, as Model Garden does; a resumed run starts every worker from the
chief's latest checkpoint (`_MultiWorkerRunner`), as the workers' collectives need.

Both trainers resume after a crash from the newest checkpoint that loads
(`models.common.checkpoint_recovery`) and refuse one written by a model of another
shape (`models.common.checkpoint_compat`); `model_dir/params.yaml` is rewritten only
after that check, so it still describes the checkpoints while they are compared.
"""

import functools
import os
import tempfile
from typing import Optional

from absl import logging
import orbit
import tensorflow as tf

from official.core import config_definitions as cfg
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils

from models.common import checkpoint_compat
from models.common import checkpoint_recovery
from models.common import runtime
from models.evaluation import coco
from models.training import keras_trainer


class _MultiWorkerRunner(train_lib.OrbitExperimentRunner):
    """Model Garden's runner, whose non-chief workers start from the chief's latest
    checkpoint.

    Model Garden gives a non-chief worker of a multi-worker run an empty temporary
    checkpoint folder (its writes must not overwrite the chief's), so on a resumed run
    only the chief restores: the workers then create different variables (optimizer
    slots) in a different order and their collectives fail. Here a non-chief worker's
    temporary folder starts with a copy of the latest checkpoint in `model_dir`."""

    def _maybe_build_checkpoint_manager(self):
        if self.strategy.extended.should_checkpoint or not self.trainer.checkpoint:
            return super()._maybe_build_checkpoint_manager()
        directory = tempfile.mkdtemp()
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest:
            for path in tf.io.gfile.glob(latest + ".*"):
                tf.io.gfile.copy(path, os.path.join(directory, os.path.basename(path)))
            tf.compat.v1.train.update_checkpoint_state(
                directory, os.path.join(directory, os.path.basename(latest)))
        return tf.train.CheckpointManager(
            self.trainer.checkpoint, directory=directory, max_to_keep=1,
            step_counter=self.trainer.global_step,
            checkpoint_interval=self.params.trainer.checkpoint_interval,
            init_fn=self.trainer.initialize)


class _LastEvalLogs:
    """An Orbit eval action that keeps the logs of the latest evaluation."""

    def __init__(self):
        self.logs = None

    def __call__(self, logs):
        self.logs = logs


class _CheckedController(orbit.Controller):
    """Orbit's controller, checking that a checkpoint fits the model before restoring
    it (`checkpoint_compat.check_model_fits` against `params`)."""

    def __init__(self, *args, params: cfg.ExperimentConfig, **kwargs):
        self._params = params
        super().__init__(*args, **kwargs)

    def restore_checkpoint(self, checkpoint_path: Optional[str] = None):
        """Checks, then restores `checkpoint_path` or the latest checkpoint."""
        path = checkpoint_path or self.checkpoint_manager.latest_checkpoint
        if path:
            checkpoint_compat.check_model_fits(self.checkpoint_manager.checkpoint.model,
                                               path, self._params)
        return super().restore_checkpoint(checkpoint_path)


def run_experiment(params: cfg.ExperimentConfig, model_dir: str, mode: str,
                   trainer: str = "orbit", cpu_replicas: int = 0,
                   verbose: int = 1) -> Optional[dict]:
    """Trains and / or evaluates (`mode` as Model Garden's `--mode`); returns the COCO
    metrics of the last evaluation (or None)."""
    strategy = runtime.distribution_strategy(params, cpu_replicas)
    logging.info("%s with %d replica(s): %s", type(strategy).__name__,
                 strategy.num_replicas_in_sync, ", ".join(
                     d for d in getattr(strategy.extended, "worker_devices", ())))
    if trainer == "orbit":
        training = "train" in mode
        if training and strategy.extended.should_checkpoint:
            checkpoint_recovery.recover(model_dir)
        with strategy.scope():
            task = task_factory.get_task(params.task, logging_dir=model_dir)
        last_eval = _LastEvalLogs()
        with runtime.mixed_precision(params.runtime.mixed_precision_dtype):  # builds the model
            runner = _MultiWorkerRunner(
                distribution_strategy=strategy, task=task, mode=mode, params=params,
                model_dir=model_dir, eval_actions=[last_eval],
                controller_cls=functools.partial(_CheckedController, params=params))
        if training:  # the Keras trainer writes it itself
            train_utils.serialize_config(params, model_dir)
        runner.run()
        return coco.coco_metrics(last_eval.logs) if last_eval.logs else None
    if mode not in ("train", "train_and_eval", "eval"):
        raise ValueError(f"--trainer=keras supports train, train_and_eval and eval, got {mode}")
    if "train" in mode:
        keras_trainer.train(params, model_dir, strategy=strategy, verbose=verbose)
    return coco.evaluate(params, model_dir) if mode != "train" else None
