"""models.recipe_flags: the flags shared by the demo, the ablation and the analysis
describe a `synthetic_runs.Recipe`; without flags it is the recipe's defaults."""

import types

import pytest

from models import recipe_flags
from models.training import pretraining
from models.training import synthetic_runs


def _command():
    """A stand-in command whose flags are the recipe's."""
    command = types.ModuleType("recipe")
    command.define_flags = recipe_flags.define_recipe_flags
    return command


def test_defaults_are_the_recipe_defaults(command_flags):
    command_flags(_command())
    assert recipe_flags.recipe_from_flags() == synthetic_runs.Recipe()


def test_flags_set_every_field(command_flags):
    command_flags(_command(), "--data", "/d", "--train_images", "40", "--val_images",
                  "7", "--size", "96", "--data_seed", "5", "--pretrain_steps", "3",
                  "--pretrain_images", "25", "--steps", "12", "--batch", "2",
                  "--learning_rate", "0.005", "--mixed_precision_dtype", "float16")
    recipe = recipe_flags.recipe_from_flags()
    assert recipe == synthetic_runs.Recipe(
        data_dir="/d", train_images=40, val_images=7, image_size=96, data_seed=5,
        pretrain=pretraining.PretrainSettings(train_images=25, val_images=4, steps=3,
                                              seed=5, mixed_precision_dtype="float16"),
        batch_size=2, train_steps=12, learning_rate=0.005, mixed_precision_dtype="float16")
    assert recipe_flags.recipe_settings() == {
        "data": "/d", "train_images": 40, "val_images": 7, "size": 96, "data_seed": 5,
        "pretrain_steps": 3, "pretrain_images": 25, "steps": 12, "batch": 2,
        "learning_rate": 0.005, "mixed_precision_dtype": "float16"}


@pytest.mark.parametrize("images, val_images", [(5, 1), (6, 1), (13, 2)])
def test_pretraining_measures_on_a_sixth_as_many_images(command_flags, images,
                                                       val_images):
    command_flags(_command(), "--pretrain_images", str(images))
    assert recipe_flags.recipe_from_flags().pretrain.val_images == val_images
