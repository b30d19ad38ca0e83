"""Set-up shared by the demo, the ablation and the analysis: the synthetic data set and
the overrides of `dcn_maskrcnn_synthetic` for a training budget.

`prepare_data` draws the set with `models.data.synthetic` and writes Model Garden
TFRecords with `models.data.tfrecords` (both reuse what is already up to date);
`DEMO_DATA` is the generator setting of the CPU runs: at most 4 instances per image,
each at least 1% of the image area, so a model trained from scratch for minutes
on small images has objects it can learn (the generator's defaults, made for
256x256 images, leave most instances a few pixels wide at 128x128).
`budget_overrides` sizes the experiment for it: image size, batch, steps, and a
learning-rate schedule whose warm-up and decays (10/16 and 14/16 of the run, as in
the paper) follow the number of steps; `train_variant` trains a variant on it.
"""

import os
from typing import Optional

import tf_keras

from models.common import runtime
from models.configs import experiments
from models.data import synthetic
from models.data import tfrecords
from models.training import keras_trainer

CLASS_NAMES = ("background",) + tuple(synthetic.CLASS_NAMES)


DEMO_DATA = synthetic.GeneratorConfig(max_instances=4, min_area_frac=0.01)


def prepare_data(root: str, num_train: int, num_val: int, size: int, seed: int = 0,
                 workers: Optional[int] = None, train_shards: int = 2,
                 config: synthetic.GeneratorConfig = DEMO_DATA) -> dict:
    """Draws (or reuses) the data set under `root` with generator `config`; returns
    `synthetic_paths(root)` plus `root` and `reused`."""
    paths = synthetic.generate(root, num_train, num_val, size, seed, workers=workers,
                               config=config)
    tfrecords.convert_split(root, "train", num_shards=train_shards)
    tfrecords.convert_split(root, "val", num_shards=1)
    return {**experiments.synthetic_paths(root), "root": str(root),
            "reused": paths.reused}


def budget_overrides(data: dict, size: int, batch_size: int, train_steps: int,
                     variant: str = "dcnv2", steps_per_epoch: int = 50,
                     validation_steps: int = 0, base_lr: float = 0.02,
                     seed: int = 0) -> dict:
    """Overrides of `dcn_maskrcnn_synthetic` for a run of `train_steps` on `data`."""
    warmup = max(1, min(100, train_steps // 10))
    return {
        "task": {
            "model": {"variant": variant, "input_size": [size, size, 3]},
            "train_data": {"input_path": data["train"], "global_batch_size": batch_size,
                           "seed": seed},
            "validation_data": {"input_path": data["val"],
                                "global_batch_size": batch_size},
            "annotation_file": data["annotation_file"],
        },
        "trainer": {
            "train_steps": train_steps,
            "steps_per_loop": min(steps_per_epoch, train_steps),
            "summary_interval": min(steps_per_epoch, train_steps),
            "checkpoint_interval": min(steps_per_epoch * 4, train_steps),
            "validation_interval": train_steps,
            "validation_steps": validation_steps,
            "optimizer_config": experiments.stepwise_sgd(
                base_lr, train_steps, warmup).as_dict(),
        },
    }


def train_variant(data: dict, variant: str, model_dir: str, size: int, batch_size: int,
                  train_steps: int, seed: int = 0, validation_steps: int = 0,
                  overrides: Optional[dict] = None, callbacks=()):
    """Trains `variant` (plus `overrides`) on `data` into `model_dir` with the Keras
    trainer, in a fresh Keras session seeded with `seed`; returns (params, model)."""
    params = runtime.experiment_params(
        experiments.SYNTHETIC_EXPERIMENT,
        budget_overrides(data, size, batch_size, train_steps, variant,
                         validation_steps=validation_steps, seed=seed),
        overrides or {})
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(seed)
    model, _ = keras_trainer.train(params, model_dir, validate=False, verbose=2,
                                   callbacks=callbacks)
    return params, model


def run_dir(name: str, root: str = "runs") -> str:
    """`runs/<name>`: checkpoints, metrics.json, export/ and pictures of a run."""
    return os.path.join(root, name)
