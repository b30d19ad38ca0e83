"""COCO evaluation of a Mask R-CNN checkpoint with Model Garden's COCO evaluator.

    python -m models.evaluate --experiment=dcn_maskrcnn_synthetic \\
        --checkpoint=runs/dcnv2 --name=dcnv2 [--params_override=...]

Runs the task's validation steps over `task.validation_data` (Model Garden's
`COCOEvaluator`, pycocotools underneath, against `task.annotation_file`), writes box
and mask AP, AP50, AP75, APs, APm, APl to `runs/<name>/metrics.json` (or
`--out_dir`) and prints them as a table (in percent).
"""

import json
import os
from typing import Mapping, Optional

from absl import app
from absl import flags
import tensorflow as tf

from official.core import config_definitions as cfg
from official.core import task_factory

from models.common import runtime

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
KINDS = ("box", "mask")


def coco_metrics(logs: Mapping) -> dict:
    """`{'box': {AP, AP50, ...}, 'mask': {...}}` from Model Garden's evaluator logs."""
    metrics = {}
    for kind, prefix in (("box", ""), ("mask", "mask_")):
        if prefix + "AP" in logs:
            metrics[kind] = {key: float(logs[prefix + key]) for key in METRIC_KEYS}
    return metrics


def latest_checkpoint(path: str) -> str:
    """`path` itself, or the latest checkpoint in the directory `path`."""
    if tf.io.gfile.isdir(path):
        found = tf.train.latest_checkpoint(path)
        if not found:
            raise FileNotFoundError(f"no checkpoint in {path}")
        return found
    return path


def evaluate_model(params: cfg.ExperimentConfig, model, task=None,
                   steps: Optional[int] = None, logging_dir: Optional[str] = None) -> dict:
    """COCO metrics of `model` on `params.task.validation_data` (`steps` batches, or all)."""
    task = task or task_factory.get_task(params.task, logging_dir=logging_dir)
    task.build_metrics(training=False)
    dataset = task.build_inputs(params.task.validation_data)
    if steps:
        dataset = dataset.take(steps)
    step = tf.function(lambda inputs: task.validation_step(inputs, model))
    state = None
    for inputs in dataset:
        state = task.aggregate_logs(state, step(inputs))
    if state is None:
        raise ValueError("the validation data is empty")
    return coco_metrics(task.reduce_aggregated_logs(state))


def evaluate(params: cfg.ExperimentConfig, checkpoint: str,
             steps: Optional[int] = None, logging_dir: Optional[str] = None) -> dict:
    """Builds the experiment's model, restores `checkpoint` (file or directory) and
    returns its COCO metrics, with the checkpoint path and step."""
    path = latest_checkpoint(checkpoint)
    task = task_factory.get_task(params.task, logging_dir=logging_dir)
    model = task.build_model()
    status = tf.train.Checkpoint(model=model).read(path)
    status.expect_partial().assert_existing_objects_matched()
    metrics = evaluate_model(params, model, task, steps)
    metrics["checkpoint"] = path
    return metrics


def write_metrics(metrics: dict, run_dir: str) -> str:
    """Writes `run_dir/metrics.json`; returns its path."""
    tf.io.gfile.makedirs(run_dir)
    path = os.path.join(run_dir, "metrics.json")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def format_table(rows: Mapping[str, dict], extra: Optional[Mapping[str, dict]] = None
                 ) -> str:
    """Rows of box / mask AP (percent), one per run; `extra` adds columns per run
    (`{run: {column: text}}`)."""
    extra = extra or {}
    extra_columns = list(dict.fromkeys(c for cols in extra.values() for c in cols))
    names = [f"{kind} {key}" for kind in KINDS for key in METRIC_KEYS]
    header = ["run"] + names + extra_columns
    lines = []
    for run, metrics in rows.items():
        cells = [str(run)]
        for kind in KINDS:
            values = metrics.get(kind, {})
            cells += [f"{100 * values[k]:.1f}" if values.get(k, -1) >= 0 else "-"
                      for k in METRIC_KEYS]
        cells += [str(extra.get(run, {}).get(c, "")) for c in extra_columns]
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]
    def fmt(row):
        return "  ".join(cell.rjust(width) if i else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(row, widths)))
    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule] + [fmt(row) for row in lines])


FLAGS = flags.FLAGS


def main(_):
    params = runtime.experiment_params(FLAGS.experiment, *FLAGS.config_file or [],
                                       FLAGS.params_override)
    run_dir = FLAGS.out_dir or os.path.join("runs", FLAGS.name)
    metrics = evaluate(params, FLAGS.checkpoint, steps=FLAGS.steps, logging_dir=run_dir)
    path = write_metrics(metrics, run_dir)
    print(format_table({FLAGS.name: metrics}))
    print(f"metrics: {path}")


if __name__ == "__main__":
    flags.DEFINE_string("experiment", None, "registered experiment")
    flags.DEFINE_multi_string("config_file", None, "YAML overrides, in order")
    flags.DEFINE_string("params_override", None, "YAML / JSON overrides (last)")
    flags.DEFINE_string("checkpoint", None, "checkpoint file or directory")
    flags.DEFINE_string("name", "eval", "run name: results go to runs/<name>")
    flags.DEFINE_string("out_dir", None, "results folder (default runs/<name>)")
    flags.DEFINE_integer("steps", None, "validation batches (default: all)")
    flags.mark_flags_as_required(["experiment", "checkpoint"])
    app.run(main)
