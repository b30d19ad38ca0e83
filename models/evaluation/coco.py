"""COCO evaluation of a Mask R-CNN with Model Garden's COCO evaluator.

`evaluate_model` runs the task's validation steps over `task.validation_data` (Model
Garden's `COCOEvaluator`, pycocotools underneath, against `task.annotation_file`) and
returns box and mask AP, AP50, AP75, APs, APm, APl; `evaluate` does so for a
checkpoint. `write_metrics` writes them to a run's `metrics.json`, `format_table`
lays out the metrics of several runs side by side (in percent).
"""

import json
import os
from typing import Mapping, Optional

import tensorflow as tf

from official.core import config_definitions as cfg
from official.core import task_factory

from models.common import checkpoint_compat
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


class CocoEvaluator:
    """COCO metrics of models on `params.task.validation_data` (`steps` batches, or
    all), with Model Garden's evaluator; calling it again on the same model reuses
    the traced validation step."""

    def __init__(self, params: cfg.ExperimentConfig, task=None, steps: Optional[int] = None,
                 logging_dir: Optional[str] = None):
        self._task = task or task_factory.get_task(params.task, logging_dir=logging_dir)
        self._task.build_metrics(training=False)
        dataset = self._task.build_inputs(params.task.validation_data)
        self._dataset = dataset.take(steps) if steps else dataset
        self._steps = {}  # id(model) -> traced validation step

    def __call__(self, model) -> dict:
        """`{'box': {AP, AP50, ...}, 'mask': {...}}` of `model`."""
        task = self._task
        step = self._steps.get(id(model))
        if step is None:
            step = tf.function(lambda inputs: task.validation_step(inputs, model))
            self._steps = {id(model): step}
        state = None
        for inputs in self._dataset:
            state = task.aggregate_logs(state, step(inputs))
        if state is None:
            raise ValueError("the validation data is empty")
        return coco_metrics(task.reduce_aggregated_logs(state))


def evaluate_model(params: cfg.ExperimentConfig, model, task=None,
                   steps: Optional[int] = None, logging_dir: Optional[str] = None) -> dict:
    """COCO metrics of `model` on `params.task.validation_data` (`steps` batches, or all)."""
    return CocoEvaluator(params, task, steps, logging_dir)(model)


def evaluate(params: cfg.ExperimentConfig, checkpoint: str,
             steps: Optional[int] = None, logging_dir: Optional[str] = None) -> dict:
    """Builds the experiment's model, restores `checkpoint` (file or directory) and
    returns its COCO metrics, with the checkpoint path.

    Raises:
      checkpoint_compat.CheckpointMismatchError: the checkpoint was written by a model
        of another shape.
    """
    path = runtime.latest_checkpoint(checkpoint)
    task = task_factory.get_task(params.task, logging_dir=logging_dir)
    model = task.build_model()
    checkpoint_compat.check_model_fits(model, path, params, allow_unused=True)
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

