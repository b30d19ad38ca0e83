"""models.training.synthetic_runs: the overrides of a training budget (schedule, warm-up,
initial checkpoint), the pretraining image setting, and where pretraining writes."""

import dataclasses
import os

import pytest
from official.modeling import optimization

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.data import synthetic
from models.training import pretraining
from models.training import synthetic_runs

DATA = {"train": "/data/tfrecords/train-*.tfrecord", "val": "/data/tfrecords/val-*.tfrecord",
        "annotation_file": "/data/annotations/instances_val.json"}


def _expected_lr(step, base, train_steps, warmup):
    """The paper's schedule written out: base / 10 after 10/16 of the steps, base / 100
    after 14/16, and a linear ramp from base / 3 over the first `warmup` steps."""
    first, second = int(train_steps * 10 / 16), int(train_steps * 14 / 16)
    rate = base if step <= first else base / 10 if step <= second else base / 100
    if step < warmup:
        rate = base / 3 + (rate - base / 3) * step / warmup
    return rate


@pytest.mark.parametrize("train_steps, warmup", [
    (5, 1), (16, 1), (160, 16), (999, 99), (1000, 100), (4800, 100)])
def test_budget_schedule_follows_the_number_of_steps(train_steps, warmup):
    """Decays at 10/16 and 14/16 of the run, warm-up over a tenth of it (1 to 100
    steps): the learning rate Model Garden builds from the overrides equals the
    schedule written out, step by step."""
    overrides = synthetic_runs.budget_overrides(DATA, 64, 2, train_steps, base_lr=0.03)
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    optimizer = params.trainer.optimizer_config
    assert optimizer.warmup.linear.warmup_steps == warmup
    assert list(optimizer.learning_rate.stepwise.boundaries) == [
        train_steps * 10 // 16, train_steps * 14 // 16]
    learning_rate = optimization.OptimizerFactory(optimizer).build_learning_rate()
    steps = sorted({0, 1, warmup - 1, warmup, train_steps - 1, train_steps,
                    *(b + d for b in optimizer.learning_rate.stepwise.boundaries
                      for d in (-1, 0, 1))} - {-1})
    for step in steps:
        assert float(learning_rate(step)) == pytest.approx(
            _expected_lr(step, 0.03, train_steps, warmup), rel=1e-5), step


def test_budget_overrides_size_the_run():
    """Image size, batch, data paths, seed, loop / summary / checkpoint intervals
    (capped by the run length) and validation at the end of the run."""
    overrides = synthetic_runs.budget_overrides(DATA, 96, 4, 300, variant="dcnv1",
                                                steps_per_epoch=40, validation_steps=3,
                                                seed=7)
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    task, trainer = params.task, params.trainer
    assert task.model.variant == "dcnv1" and list(task.model.input_size) == [96, 96, 3]
    assert task.train_data.input_path == DATA["train"] and task.train_data.seed == 7
    assert task.train_data.global_batch_size == task.validation_data.global_batch_size == 4
    assert task.validation_data.input_path == DATA["val"]
    assert task.annotation_file == DATA["annotation_file"]
    assert (trainer.train_steps, trainer.steps_per_loop, trainer.summary_interval,
            trainer.checkpoint_interval, trainer.validation_interval,
            trainer.validation_steps) == (300, 40, 40, 160, 300, 3)
    short = synthetic_runs.budget_overrides(DATA, 96, 4, 30, steps_per_epoch=40)["trainer"]
    assert (short["steps_per_loop"], short["summary_interval"],
            short["checkpoint_interval"]) == (30, 30, 30)


def test_budget_overrides_start_from_a_backbone_checkpoint():
    """`init_checkpoint` sets the task's initial checkpoint with modules 'backbone';
    without it the task keeps no initial checkpoint."""
    path = "/data/pretrained/resnet10/backbone"
    overrides = synthetic_runs.budget_overrides(DATA, 64, 2, 100, init_checkpoint=path)
    assert overrides["task"]["init_checkpoint"] == path
    assert overrides["task"]["init_checkpoint_modules"] == "backbone"
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    assert params.task.init_checkpoint == path
    assert params.task.init_checkpoint_modules == "backbone"

    plain = synthetic_runs.budget_overrides(DATA, 64, 2, 100)
    assert "init_checkpoint" not in plain["task"]
    assert not runtime.experiment_params(SYNTHETIC_EXPERIMENT, plain).task.init_checkpoint


def test_budget_overrides_and_recipe_set_the_precision():
    """The run computes in the recipe's mixed-precision type; the recipe's default is
    bfloat16 exactly where the CPU has bfloat16 dot products, for the pretraining too."""
    overrides = synthetic_runs.budget_overrides(DATA, 64, 2, 100,
                                                mixed_precision_dtype="bfloat16")
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    assert params.runtime.mixed_precision_dtype == "bfloat16"
    plain = synthetic_runs.budget_overrides(DATA, 64, 2, 100)
    assert runtime.experiment_params(
        SYNTHETIC_EXPERIMENT, plain).runtime.mixed_precision_dtype == "float32"
    recipe = synthetic_runs.Recipe()
    expected = "bfloat16" if runtime.cpu_has_bfloat16() else "float32"
    assert recipe.mixed_precision_dtype == recipe.pretrain.mixed_precision_dtype == expected


def test_classification_config_centres_one_larger_shape():
    """The pretraining setting keeps the shapes and appearance of the data set's
    setting, centres the shape and draws it over 6-40% of the image."""
    config = synthetic.GeneratorConfig(max_noise=1.0, fills=("gradient",), warp=0.2,
                                       min_star_points=6, max_instances=3)
    pretrain = synthetic_runs.classification_config(config)
    assert pretrain.centred
    assert (pretrain.min_area_frac, pretrain.max_area_frac) == (0.06, 0.4)
    changed = {"centred", "min_area_frac", "max_area_frac"}
    for field in dataclasses.fields(config):
        if field.name not in changed:
            assert getattr(pretrain, field.name) == getattr(config, field.name), field.name
    assert not config.centred  # the given config is left alone


def test_pretrain_backbone_writes_next_to_the_data(monkeypatch):
    """The backbone of the experiment's ResNet depth is pretrained under
    `<data root>/pretrained/resnet<depth>`, on the data's setting made centred."""
    calls = []
    monkeypatch.setattr(pretraining, "pretrain_backbone",
                        lambda out_dir, model, generator, settings, verbose: calls.append(
                            (out_dir, model, generator, settings)) or {"reused": True})
    data = {**DATA, "root": "/data", "generator": synthetic_runs.DEMO_DATA}
    settings = pretraining.PretrainSettings(steps=5)
    overrides = {"task": {"model": {"backbone": {"dcn_resnet": {"model_id": 18}}}}}
    assert synthetic_runs.pretrain_backbone(data, settings, overrides, verbose=0) == {
        "reused": True}
    (out_dir, model, generator, given), = calls
    assert out_dir == os.path.join("/data", "pretrained", "resnet18")
    assert model.backbone.dcn_resnet.model_id == 18
    assert generator == synthetic_runs.classification_config(synthetic_runs.DEMO_DATA)
    assert given is settings
