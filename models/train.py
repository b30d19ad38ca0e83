"""Trains and evaluates a registered experiment (Model Garden flags).

    python -m models.train --experiment=dcn_maskrcnn_synthetic --mode=train_and_eval \\
        --model_dir=runs/dcnv2 --params_override=task.model.variant=dcnv1

`--trainer=orbit` (default) runs Model Garden's own trainer
(`official.core.train_lib.run_experiment`: Orbit controller, checkpoints every
`trainer.checkpoint_interval` steps, resumes from the latest checkpoint in
`--model_dir`); `--trainer=keras` runs Keras `model.fit` (`models.training.keras_trainer`)
and, for modes with evaluation, then evaluates the last checkpoint. Evaluation
results (COCO box and mask AP) are written to `MODEL_DIR/metrics.json`.
`--cpu_replicas=N` trains with a `MirroredStrategy` over N logical CPU devices.
"""

from absl import app
from absl import flags
from absl import logging

from official.common import flags as tfm_flags
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils

from models.common import runtime
from models.evaluation import coco
from models.training import keras_trainer

FLAGS = flags.FLAGS
flags.DEFINE_enum("trainer", "orbit", ["orbit", "keras"],
                  "Model Garden's trainer (orbit) or Keras model.fit (keras).")
flags.DEFINE_integer("cpu_replicas", 0,
                     "> 1: MirroredStrategy over this many logical CPU devices.")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity (keras trainer).")



class _LastEvalLogs:
    """An Orbit eval action that keeps the logs of the latest evaluation."""

    def __init__(self):
        self.logs = None

    def __call__(self, logs):
        self.logs = logs


def run(params, model_dir: str, mode: str, trainer: str = "orbit", cpu_replicas: int = 0,
        verbose: int = 1):
    """Trains and / or evaluates; returns the evaluation metrics (or None)."""
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
        metrics = coco.coco_metrics(last_eval.logs) if last_eval.logs else None
    else:
        if mode not in ("train", "train_and_eval", "eval"):
            raise ValueError(f"--trainer=keras supports train, train_and_eval and eval, got {mode}")
        if "train" in mode:
            keras_trainer.train(params, model_dir, strategy=strategy, verbose=verbose)
        metrics = None
        if mode != "train":
            metrics = coco.evaluate(params, model_dir)
    if metrics:
        path = coco.write_metrics(metrics, model_dir)
        print(coco.format_table({model_dir: metrics}))
        print(f"metrics: {path}")
    return metrics


def main(_):
    params = train_utils.parse_configuration(FLAGS)
    run(params, FLAGS.model_dir, FLAGS.mode, FLAGS.trainer, FLAGS.cpu_replicas,
        FLAGS.verbose)


if __name__ == "__main__":
    tfm_flags.define_flags()
    flags.mark_flags_as_required(["experiment", "mode", "model_dir"])
    app.run(main)
