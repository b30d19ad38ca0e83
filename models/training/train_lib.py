"""Trains and / or evaluates an experiment with Model Garden's trainer or Keras `fit`.

`run_experiment(params, model_dir, mode, trainer)`: with `trainer='orbit'`, Model
Garden's own trainer (`official.core.train_lib.run_experiment`: Orbit controller,
checkpoints every `trainer.checkpoint_interval` steps, resumes from the latest
checkpoint in `model_dir`); with `trainer='keras'`, Keras `model.fit`
(`models.training.keras_trainer`) and, for modes with evaluation, then a COCO
evaluation of the last checkpoint (`models.evaluation.coco`). `cpu_replicas > 1`
trains with a `MirroredStrategy` over that many logical CPU devices.
"""

from typing import Optional

from absl import logging

from official.core import config_definitions as cfg
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils

from models.common import runtime
from models.evaluation import coco
from models.training import keras_trainer


class _LastEvalLogs:
    """An Orbit eval action that keeps the logs of the latest evaluation."""

    def __init__(self):
        self.logs = None

    def __call__(self, logs):
        self.logs = logs


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
        if "train" in mode:  # the Keras trainer writes it itself
            train_utils.serialize_config(params, model_dir)
        with strategy.scope():
            task = task_factory.get_task(params.task, logging_dir=model_dir)
        last_eval = _LastEvalLogs()
        train_lib.run_experiment(
            distribution_strategy=strategy, task=task, mode=mode, params=params,
            model_dir=model_dir, eval_actions=[last_eval])
        return coco.coco_metrics(last_eval.logs) if last_eval.logs else None
    if mode not in ("train", "train_and_eval", "eval"):
        raise ValueError(f"--trainer=keras supports train, train_and_eval and eval, got {mode}")
    if "train" in mode:
        keras_trainer.train(params, model_dir, strategy=strategy, verbose=verbose)
    return coco.evaluate(params, model_dir) if mode != "train" else None
