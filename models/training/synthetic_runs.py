"""Set-up shared by the demo, the ablation and the analysis: the synthetic data set,
the pretrained backbone, and the overrides of `dcn_maskrcnn_synthetic` for a budget.

`DEMO_DATA` is the generator setting of the CPU runs. It keeps the geometric
variation the paper is about (instances over a 6x range of areas, aspect ratios up to
2, any rotation, shear, bends, tapers and non-rigid warps) and drops what only makes
the pictures hard to read in a few minutes of training: distractor strokes, striped
and blotched fills, strong noise, instances mostly hidden by others or cut off by the
image border (a cross cut in half is a bar); stars have 5 to 7 points (a 4-point star
is a cross). 1 to 3 instances per image cover 5-30% of it each, at least 90% of each
inside the image and at least half of each visible.

`prepare_data` draws the set with `models.data.synthetic` and writes Model Garden
TFRecords (both reuse what is up to date); `pretrain_backbone` pretrains the regular
ResNet of the experiment on classifying single shapes drawn with the same setting
(`models.training.pretraining`; cached next to the data), the stand-in for the
paper's ImageNet initialisation; `budget_overrides` sizes the experiment: image
size, batch, steps, a learning-rate schedule whose warm-up and decays (10/16 and
14/16 of the run, as in the paper) follow the number of steps, and the backbone
checkpoint to start from. A `Recipe` holds all of it for the demo, the ablation and
the analysis: `prepare` makes its data and backbone, `experiment` its experiment for
a variant, `train_variant` trains one.
"""

import dataclasses
import os
from typing import Optional

import tf_keras

from models.common import runtime
from models.configs import experiments
from models.data import synthetic
from models.data import tfrecords
from models.training import keras_trainer
from models.training import pretraining

CLASS_NAMES = ("background",) + tuple(synthetic.CLASS_NAMES)

DEMO_DATA = synthetic.GeneratorConfig(
    min_instances=1, max_instances=3, min_area_frac=0.05, max_area_frac=0.3,
    min_visible_frac=0.5, min_inside_frac=0.9, max_aspect=2.0, max_shear=0.3, warp=0.06,
    min_strokes=0, max_strokes=0, max_noise=2.0, max_background_noise=10.0,
    fills=("flat", "gradient"), min_star_points=5)


# The precision of the CPU runs: bfloat16 computations (float32 variables) where the
# CPU multiplies bfloat16 natively, a 1.2x faster detector step and a 1.35x faster
# pretraining step on a 2-core AMD EPYC (Zen 4); float32 elsewhere.
MIXED_PRECISION = "bfloat16" if runtime.cpu_has_bfloat16() else "float32"


def classification_config(config: synthetic.GeneratorConfig) -> synthetic.GeneratorConfig:
    """The setting of the pretraining images: `config`'s shapes and appearance, one
    shape per image, near the centre, 6-40% of the image."""
    return dataclasses.replace(config, centred=True, min_area_frac=0.06, max_area_frac=0.4)


def prepare_data(root: str, num_train: int, num_val: int, size: int, seed: int = 0,
                 workers: Optional[int] = None, train_shards: int = 2,
                 config: synthetic.GeneratorConfig = DEMO_DATA) -> dict:
    """Draws (or reuses) the data set under `root` with generator `config`; returns
    `synthetic_paths(root)` plus `root`, `generator` (the config) and `reused`."""
    paths = synthetic.generate(root, num_train, num_val, size, seed, workers=workers,
                               config=config)
    tfrecords.convert_split(root, "train", num_shards=train_shards)
    tfrecords.convert_split(root, "val", num_shards=1)
    return {**experiments.synthetic_paths(root), "root": str(root), "generator": config,
            "reused": paths.reused}


def pretrain_backbone(data: dict, settings: pretraining.PretrainSettings = (
                          pretraining.PretrainSettings()),
                      overrides: Optional[dict] = None, verbose: int = 2) -> dict:
    """Pretrains (or reuses) the regular backbone of `dcn_maskrcnn_synthetic` (plus
    `overrides`) on classifying shapes of `data`'s setting, into
    `<data root>/pretrained/resnet<depth>`; returns `pretraining.pretrain_backbone`'s
    summary (`checkpoint`, `val_accuracy`, ...)."""
    params = runtime.experiment_params(experiments.SYNTHETIC_EXPERIMENT, overrides or {})
    depth = params.task.model.backbone.dcn_resnet.model_id
    out_dir = os.path.join(data["root"], "pretrained", f"resnet{depth}")
    return pretraining.pretrain_backbone(out_dir, params.task.model,
                                         classification_config(data["generator"]),
                                         settings, verbose=verbose)


def budget_overrides(data: dict, size: int, batch_size: int, train_steps: int,
                     variant: str = "dcnv2", steps_per_epoch: int = 50,
                     validation_steps: int = 0, base_lr: float = 0.02,
                     seed: int = 0, init_checkpoint: Optional[str] = None,
                     mixed_precision_dtype: str = "float32") -> dict:
    """Overrides of `dcn_maskrcnn_synthetic` for a run of `train_steps` on `data`,
    starting from the backbone in `init_checkpoint` when given, computing in
    `mixed_precision_dtype`."""
    warmup = max(1, min(100, train_steps // 10))
    task = {
        "model": {"variant": variant, "input_size": [size, size, 3]},
        "train_data": {"input_path": data["train"], "global_batch_size": batch_size,
                       "seed": seed},
        "validation_data": {"input_path": data["val"], "global_batch_size": batch_size},
        "annotation_file": data["annotation_file"],
    }
    if init_checkpoint:
        task.update(init_checkpoint=init_checkpoint, init_checkpoint_modules="backbone")
    return {
        "task": task,
        "runtime": {"mixed_precision_dtype": mixed_precision_dtype},
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


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the demo, the ablation and the analysis share: the data set, the
    pretrained backbone and the training budget, so their runs are comparable.

    Attributes:
      data_dir: folder of the synthetic set (and of the pretrained backbone).
      train_images, val_images, image_size, data_seed: the set's size and seed.
      generator: the generator setting of the set.
      pretrain: the backbone's classification pretraining (`steps` 0: none, the
        detector then trains from scratch).
      batch_size, train_steps, learning_rate: the detector's budget and peak rate.
      mixed_precision_dtype: what the pretraining and the detector compute in
        ('bfloat16' or 'float16' with float32 variables, or 'float32').
    """
    data_dir: str = os.path.join("data", "synthetic_demo")
    train_images: int = 1000
    val_images: int = 200
    image_size: int = 128
    data_seed: int = 0
    generator: synthetic.GeneratorConfig = DEMO_DATA
    pretrain: pretraining.PretrainSettings = pretraining.PretrainSettings(
        mixed_precision_dtype=MIXED_PRECISION)
    batch_size: int = 4
    train_steps: int = 1500
    learning_rate: float = 0.02
    mixed_precision_dtype: str = MIXED_PRECISION


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A recipe's data (`prepare_data`'s dict) and pretraining summary (None without
    pretraining)."""
    data: dict
    pretraining: Optional[dict] = None

    @property
    def init_checkpoint(self) -> Optional[str]:
        """The pretrained backbone's checkpoint, or None."""
        return self.pretraining["checkpoint"] if self.pretraining else None


def prepare(recipe: Recipe, verbose: int = 2) -> Prepared:
    """Draws (or reuses) the recipe's data set and pretrains (or reuses) its backbone."""
    data = prepare_data(recipe.data_dir, recipe.train_images, recipe.val_images,
                        recipe.image_size, recipe.data_seed, config=recipe.generator)
    summary = None
    if recipe.pretrain.steps > 0:
        summary = pretrain_backbone(data, recipe.pretrain, verbose=verbose)
    return Prepared(data, summary)


def experiment(recipe: Recipe, prepared: Prepared, variant: str, seed: int = 0,
               validation_steps: int = 0, overrides: Optional[dict] = None):
    """The `dcn_maskrcnn_synthetic` experiment of `variant` on the recipe (plus
    `overrides`), training seed `seed`."""
    return runtime.experiment_params(
        experiments.SYNTHETIC_EXPERIMENT,
        budget_overrides(prepared.data, recipe.image_size, recipe.batch_size,
                         recipe.train_steps, variant, validation_steps=validation_steps,
                         base_lr=recipe.learning_rate, seed=seed,
                         init_checkpoint=prepared.init_checkpoint,
                         mixed_precision_dtype=recipe.mixed_precision_dtype),
        overrides or {})


def train_variant(recipe: Recipe, prepared: Prepared, variant: str, model_dir: str,
                  seed: int = 0, validation_steps: int = 0, overrides: Optional[dict] = None,
                  callbacks=()):
    """Trains `variant` (plus `overrides`) on the recipe into `model_dir` with the Keras
    trainer, in a fresh Keras session seeded with `seed`; returns (params, model)."""
    params = experiment(recipe, prepared, variant, seed, validation_steps, overrides)
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(seed)
    model, _ = keras_trainer.train(params, model_dir, validate=False, verbose=2,
                                   callbacks=callbacks)
    return params, model


def run_dir(name: str, root: str = "runs") -> str:
    """`runs/<name>`: checkpoints, metrics.json, export/ and pictures of a run."""
    return os.path.join(root, name)
