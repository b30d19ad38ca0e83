"""Rows of the ablation of the paper's Tables 1 and 3 on the synthetic set.

A row is a variant of `dcn_maskrcnn_synthetic` (`regular`, `dcnv1`, `dcnv2`), with
`+mimic` for R-CNN feature mimicking. `run_row` trains a row once with the Keras
trainer on a synthetic data set (`models.training.synthetic_runs`; rerunning
resumes), evaluates its box and mask AP with Model Garden's COCO evaluator (written
to the run's `metrics.json`), measures its parameters, median training-step time and
median inference time of a batch, and summarises its offsets and modulation.
Those times are taken while the run trains, so they depend on what else the machine
did then; `side_by_side_times` measures the rows' steps and inference passes in
turn, in one process, so that their ratios hold. `models.evaluation.ablation_report`
lays the rows out like Table 1 of the paper.
"""

import gc
import time
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.core import task_factory

from models.common import runtime
from models.configs import maskrcnn as dcn_config
from models.evaluation import coco
from models.evaluation import deformation_stats
from models.evaluation import inference_cost
from models.training import keras_trainer
from models.training import synthetic_runs

DEFAULT_ROWS = ("regular", "dcnv1", "dcnv2", "regular+mimic", "dcnv2+mimic")
MIMIC_SUFFIX = "+mimic"


def deformable_columns(params: cfg.ExperimentConfig) -> dict:
    """The table's columns naming a run's deformable layers and mimicking."""
    resolved = dcn_config.resolve_variant(params.task.model)
    backbone = resolved.backbone.dcn_resnet
    stages = "-".join(f"conv{s}" for s in backbone.deformable_stages) \
        if backbone.deformable_stages else "none"
    conv = f"{stages}{' (mod.)' if backbone.modulated and backbone.deformable_stages else ''}"
    aligner = resolved.roi_aligner
    pool = "modulated" if aligner.deformable and aligner.modulated else \
        "yes" if aligner.deformable else "no"
    return {"deform. conv": conv, "deform. RoI pool": pool,
            "mimic": "yes" if resolved.mimic.enabled else "no"}


def _variant_and_overrides(row: str, mimic_rois: int, mimic_crop: int):
    """A row's variant and the overrides of its mimicking."""
    variant = row[:-len(MIMIC_SUFFIX)] if row.endswith(MIMIC_SUFFIX) else row
    mimic = {"enabled": row.endswith(MIMIC_SUFFIX), "rois_per_image": mimic_rois,
             "crop_size": mimic_crop}
    return variant, {"task": {"model": {"mimic": mimic}}}


def run_row(row: str, recipe: synthetic_runs.Recipe, prepared: synthetic_runs.Prepared,
            model_dir: str, seed: int, mimic_rois: int, mimic_crop: int) -> dict:
    """Trains and evaluates one row (`variant` or `variant+mimic`) of the recipe (its
    data and pretrained backbone, `synthetic_runs.prepare`) into `model_dir`, training
    seed `seed`; returns its results: `metrics`, `params`, `step_s`, `inference_s`,
    `deformation` (`models.evaluation.deformation_stats` on a batch of validation
    images) and the descriptive columns.

    Mimicking samples `mimic_rois` RoIs per image and crops them to `mimic_crop`
    pixels.
    """
    variant, overrides = _variant_and_overrides(row, mimic_rois, mimic_crop)
    timer = keras_trainer.StepTimer()
    params, model = synthetic_runs.train_variant(
        recipe, prepared, variant, model_dir, seed, validation_steps=2,
        overrides=overrides, callbacks=[timer])
    metrics = coco.evaluate_model(params, model, logging_dir=model_dir)
    coco.write_metrics(metrics, model_dir)
    task = task_factory.get_task(params.task)
    images, labels = next(iter(task.build_inputs(params.task.validation_data)))
    result = {
        "metrics": metrics,
        "params": inference_cost.inference_params(model),
        "step_s": timer.median() if timer.durations else None,
        "inference_s": inference_cost.inference_seconds(params, model),
        "deformation": deformation_stats.deformation_statistics(
            model, images, labels["image_info"]),
        **deformable_columns(params),
    }
    del model
    gc.collect()
    return result


def side_by_side_times(rows: Sequence[str], recipe: synthetic_runs.Recipe,
                       prepared: synthetic_runs.Prepared, mimic_rois: int, mimic_crop: int,
                       model_dirs: Optional[Mapping[str, str]] = None, rounds: int = 20,
                       warmup: int = 3) -> Dict[str, dict]:
    """`{row: {'step_s', 'inference_s'}}`: the median time of a training step (a batch
    of the training set, optimizer update included) and of the inference pass on a
    validation batch of every row, the rows taking turns over `rounds` rounds after
    `warmup`, so that load on the machine slows all alike.

    Each row's model is built as `run_row` builds it, with the weights of the latest
    checkpoint in `model_dirs[row]` where there is one (the pretrained backbone
    otherwise).
    """
    tf_keras.backend.clear_session()
    steps, inferences = {}, {}
    for row in rows:
        variant, overrides = _variant_and_overrides(row, mimic_rois, mimic_crop)
        params = synthetic_runs.experiment(recipe, prepared, variant, overrides=overrides)
        task = task_factory.get_task(params.task)
        with runtime.mixed_precision(params.runtime.mixed_precision_dtype):
            model = task.build_model()
            model.compile(optimizer=task.create_optimizer(params.trainer.optimizer_config,
                                                          params.runtime))
        latest = tf.train.latest_checkpoint(model_dirs[row]) if model_dirs else None
        if latest:
            tf.train.Checkpoint(model=model).restore(latest).expect_partial()
        else:
            task.initialize(model)
        batches = iter(task.build_inputs(params.task.train_data))
        train = model.make_train_function()
        # Reading the step's total loss waits for the step.
        steps[row] = lambda train=train, batches=batches: train(batches)["total_loss"].numpy()
        inferences[row] = inference_cost.inference_function(params, model)
    step_s = _interleaved_medians(steps, rounds, warmup)
    inference_s = _interleaved_medians(inferences, rounds, warmup)
    return {row: {"step_s": step_s[row], "inference_s": inference_s[row]} for row in rows}


def _interleaved_medians(functions: Mapping[str, callable], rounds: int,
                         warmup: int) -> Dict[str, float]:
    """Median wall time of each function, calling them in turn every round."""
    times = {name: [] for name in functions}
    for index in range(warmup + rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}
