"""The flags of a synthetic recipe, shared by the `demo`, `ablation` and `analyze`
commands so their runs use the same data, pretrained backbone and budget
(`models.training.synthetic_runs.Recipe`; defaults are the recipe's)."""

from absl import flags

from models.training import pretraining
from models.training import synthetic_runs

FLAGS = flags.FLAGS
_DEFAULT = synthetic_runs.Recipe()
# The recipe's flags, recorded with a run's results.
NAMES = ("data", "train_images", "val_images", "size", "data_seed", "pretrain_steps",
         "pretrain_images", "steps", "batch", "learning_rate", "mixed_precision_dtype")


def define_recipe_flags():
    """Defines the recipe's flags."""
    flags.DEFINE_string("data", _DEFAULT.data_dir, "data set folder")
    flags.DEFINE_integer("train_images", _DEFAULT.train_images, "training images")
    flags.DEFINE_integer("val_images", _DEFAULT.val_images, "validation images")
    flags.DEFINE_integer("size", _DEFAULT.image_size, "image side (multiple of 32)")
    flags.DEFINE_integer("data_seed", _DEFAULT.data_seed,
                         "random seed of the data set and the backbone's pretraining")
    flags.DEFINE_integer("pretrain_steps", _DEFAULT.pretrain.steps,
                         "steps of the backbone's classification pretraining "
                         "(0: train the detector from scratch)")
    flags.DEFINE_integer("pretrain_images", _DEFAULT.pretrain.train_images,
                         "images the backbone learns to classify (a sixth as many more "
                         "measure its accuracy)")
    flags.DEFINE_integer("steps", _DEFAULT.train_steps, "training steps of the detector")
    flags.DEFINE_integer("batch", _DEFAULT.batch_size, "global batch size")
    flags.DEFINE_float("learning_rate", _DEFAULT.learning_rate,
                       "peak learning rate (SGD, momentum 0.9)")
    flags.DEFINE_enum("mixed_precision_dtype", _DEFAULT.mixed_precision_dtype,
                      ["float32", "bfloat16", "float16"],
                      "what the pretraining and the detector compute in (variables stay "
                      "float32); the default is bfloat16 where the CPU has bfloat16 dot "
                      "products (AVX512_BF16 or AMX), else float32")


def recipe_from_flags() -> synthetic_runs.Recipe:
    """The recipe the flags describe."""
    return synthetic_runs.Recipe(
        data_dir=FLAGS.data, train_images=FLAGS.train_images, val_images=FLAGS.val_images,
        image_size=FLAGS.size, data_seed=FLAGS.data_seed,
        pretrain=pretraining.PretrainSettings(
            train_images=FLAGS.pretrain_images,
            val_images=max(1, FLAGS.pretrain_images // 6), steps=FLAGS.pretrain_steps,
            seed=FLAGS.data_seed, mixed_precision_dtype=FLAGS.mixed_precision_dtype),
        batch_size=FLAGS.batch, train_steps=FLAGS.steps, learning_rate=FLAGS.learning_rate,
        mixed_precision_dtype=FLAGS.mixed_precision_dtype)


def recipe_settings() -> dict:
    """The recipe's flag values by name."""
    return {name: FLAGS[name].value for name in NAMES}
