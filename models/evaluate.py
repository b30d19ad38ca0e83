"""COCO evaluation of a Mask R-CNN checkpoint with Model Garden's COCO evaluator.

    python -m models.evaluate --experiment=dcn_maskrcnn_synthetic \\
        --checkpoint=runs/dcnv2 --name=dcnv2 [--params_override=...]

Runs the task's validation steps over `task.validation_data` (`models.evaluation.coco`),
writes box and mask AP, AP50, AP75, APs, APm, APl to `runs/<name>/metrics.json` (or
`--out_dir`) and prints them as a table (in percent).
"""

import os

from absl import app
from absl import flags

from models.common import runtime
from models.evaluation import coco

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("experiment", None, "registered experiment")
    flags.DEFINE_multi_string("config_file", None, "YAML overrides, in order")
    flags.DEFINE_string("params_override", None, "YAML / JSON overrides (last)")
    flags.DEFINE_string("checkpoint", None, "checkpoint file or directory")
    flags.DEFINE_string("name", "eval", "run name: results go to runs/<name>")
    flags.DEFINE_string("out_dir", None, "results folder (default runs/<name>)")
    flags.DEFINE_integer("steps", None, "validation batches (default: all)")
    flags.mark_flags_as_required(["experiment", "checkpoint"])


def main(_):
    """Evaluates the checkpoint, writes metrics.json and prints the table."""
    params = runtime.experiment_params(FLAGS.experiment, *FLAGS.config_file or [],
                                       FLAGS.params_override)
    run_dir = FLAGS.out_dir or os.path.join("runs", FLAGS.name)
    metrics = coco.evaluate(params, FLAGS.checkpoint, steps=FLAGS.steps,
                            logging_dir=run_dir)
    path = coco.write_metrics(metrics, run_dir)
    print(coco.format_table({FLAGS.name: metrics}))
    print(f"metrics: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
