"""Cost of a Mask R-CNN at inference: its parameters and the time of its forward pass.

`inference_params` counts the parameters of the inference model (without the
training-only R-CNN mimic branch and the counters of the loss means);
`inference_function` runs the inference pass on one validation batch and
`inference_seconds` is its median time, as Table 1 of the paper reports.
"""

import time

import numpy as np
import tensorflow as tf

from official.core import config_definitions as cfg
from official.core import task_factory

from models import registry_imports  # noqa: F401  the task of the experiments


def inference_function(params: cfg.ExperimentConfig, model):
    """A function of no arguments running the model's inference pass (traced on the
    first call) on one validation batch and waiting for its outputs."""
    task = task_factory.get_task(params.task)
    images, labels = next(iter(task.build_inputs(params.task.validation_data)))
    infer = tf.function(lambda x: model(x, image_shape=labels["image_info"][:, 1, :],
                                        training=False))
    return lambda: tf.nest.map_structure(lambda t: t.numpy(), infer(images))


def inference_seconds(params: cfg.ExperimentConfig, model, repeats: int = 10) -> float:
    """Median time of the model's inference pass on one validation batch."""
    infer = inference_function(params, model)
    infer()  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        infer()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def inference_params(model) -> int:
    """Parameters of the inference model: its weights without the training-only mimic
    branch and without the counters of its loss means (`model.metrics`)."""
    left_out = [model.mimic_branch] if model.mimic_branch else []
    left_out += model.metrics
    excluded = {id(v) for layer in left_out for v in layer.weights}
    return int(sum(v.shape.num_elements() for v in model.weights if id(v) not in excluded))
