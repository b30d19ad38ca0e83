"""Trains and evaluates a registered experiment (Model Garden flags).

    python -m models.train --experiment=dcn_maskrcnn_synthetic --mode=train_and_eval \\
        --model_dir=runs/dcnv2 --params_override=task.model.variant=dcnv1

`--trainer=orbit` (default) runs Model Garden's own trainer (Orbit controller,
checkpoints every `trainer.checkpoint_interval` steps, resumes from the latest
checkpoint in `--model_dir`); `--trainer=keras` runs Keras `model.fit` and, for modes
with evaluation, then evaluates the last checkpoint (`models.training.train_lib`).
Evaluation results (COCO box and mask AP) are written to `MODEL_DIR/metrics.json`.
`--cpu_replicas=N` trains with a `MirroredStrategy` over N logical CPU devices. As
Model Garden's `official/vision/train.py`, it reads `--gin_file` / `--gin_params`
and builds the model under `runtime.mixed_precision_dtype`.
"""

from absl import app
from absl import flags
import gin

from official.common import flags as tfm_flags
from official.core import train_utils

from models import registry_imports  # noqa: F401  the experiments, task and backbone
from models.evaluation import coco
from models.training import train_lib

FLAGS = flags.FLAGS


def define_flags():
    """Defines Model Garden's trainer flags and those of the Keras trainer."""
    tfm_flags.define_flags()
    flags.DEFINE_enum("trainer", "orbit", ["orbit", "keras"],
                      "Model Garden's trainer (orbit) or Keras model.fit (keras).")
    flags.DEFINE_integer("cpu_replicas", 0,
                         "> 1: MirroredStrategy over this many logical CPU devices.")
    flags.DEFINE_integer("verbose", 1, "Keras fit verbosity (keras trainer).")
    flags.mark_flags_as_required(["experiment", "mode", "model_dir"])


def main(_):
    """Runs the experiment; writes and prints the metrics of its evaluation."""
    if FLAGS.gin_file or FLAGS.gin_params:  # parsing locks gin's config for the process
        gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_params)
    params = train_utils.parse_configuration(FLAGS)
    metrics = train_lib.run_experiment(params, FLAGS.model_dir, FLAGS.mode, FLAGS.trainer,
                                       FLAGS.cpu_replicas, FLAGS.verbose)
    if metrics:
        path = coco.write_metrics(metrics, FLAGS.model_dir)
        print(coco.format_table({FLAGS.model_dir: metrics}))
        print(f"metrics: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
