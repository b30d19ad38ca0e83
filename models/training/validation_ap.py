"""COCO AP on the validation split while a model trains.

`PeriodicCocoEvaluation` is a Keras callback for `models.training.keras_trainer`: at
the first Keras epoch end at or past each multiple of `interval` (below the last
step, which the caller evaluates in full), it computes box and mask AP with
`models.evaluation.coco.CocoEvaluator`, writes them to TensorBoard under
`model_dir/validation` (as `box_AP`, `mask_AP`, ...) and appends them to the run's
AP history, `model_dir/coco_history.jsonl` (one JSON object a line:
`{"step": ..., "box": {...}, "mask": {...}}`). `append_history` adds a line for an
evaluation made elsewhere; `read_history` reads them back, one per step.
"""

import json
import os
from typing import Optional

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg

from models.evaluation import coco

HISTORY_NAME = "coco_history.jsonl"


def append_history(model_dir: str, step: int, metrics: dict,
                   writer: Optional[tf.summary.SummaryWriter] = None):
    """Appends `metrics` (`{'box': {...}, 'mask': {...}}`) at `step` to the run's AP
    history, and to TensorBoard when a `writer` is given."""
    record = {"step": int(step), **{kind: metrics[kind] for kind in coco.KINDS
                                    if kind in metrics}}
    with open(os.path.join(model_dir, HISTORY_NAME), "a") as f:
        f.write(json.dumps(record) + "\n")
    if writer is not None:
        with writer.as_default(step=int(step)):
            for kind in coco.KINDS:
                for key, value in record.get(kind, {}).items():
                    tf.summary.scalar(f"{kind}_{key}", value)
        writer.flush()


def read_history(model_dir: str) -> list:
    """The AP history of a run, sorted by step, the last record of a step kept (a
    resumed run may have evaluated a step twice)."""
    path = os.path.join(model_dir, HISTORY_NAME)
    if not os.path.exists(path):
        return []
    by_step = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


class PeriodicCocoEvaluation(tf_keras.callbacks.Callback):
    """Evaluates COCO AP every `interval` training steps (see the module doc).

    Args:
      params: the experiment being trained (its validation data and annotations).
      model_dir: the run folder.
      interval: steps between evaluations; evaluations fall on Keras epoch ends
        (every `trainer.steps_per_loop` steps), so on multiples of `interval` when
        it is a multiple of the epoch.
      steps: validation batches per evaluation (None: all).
    """

    def __init__(self, params: cfg.ExperimentConfig, model_dir: str, interval: int,
                 steps: Optional[int] = None):
        super().__init__()
        self._params = params
        self._model_dir = model_dir
        self._interval = max(1, int(interval))
        self._steps = steps
        self._evaluator = None
        self._writer = None
        self._intervals_done = 0

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        self._intervals_done = self._step() // self._interval  # a resumed run

    def on_epoch_end(self, epoch, logs=None):
        step = self._step()
        if (step // self._interval <= self._intervals_done
                or step >= self._params.trainer.train_steps):
            return
        self._intervals_done = step // self._interval
        if self._evaluator is None:
            self._evaluator = coco.CocoEvaluator(self._params, steps=self._steps,
                                                 logging_dir=self._model_dir)
            self._writer = tf.summary.create_file_writer(
                os.path.join(self._model_dir, "validation"))
        append_history(self._model_dir, step, self._evaluator(self.model), self._writer)
