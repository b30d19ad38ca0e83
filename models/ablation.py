"""Ablation of the paper's Tables 1 and 3 on the synthetic set: regular / DCNv1 /
DCNv2, with and without R-CNN feature mimicking.

    python -m models.ablation                       # or: make ablation
    python -m models.ablation --steps=2000 --size=256 --variants=regular,dcnv2+mimic

Trains each row of `dcn_maskrcnn_synthetic` with the same budget, data, seed and
schedule (Keras `fit`, checkpoints in `--out/<row>`; rerunning resumes), evaluates
box and mask AP with Model Garden's COCO evaluator, and prints them side by side with
the parameter count (inference model), the median training-step time and the median
inference time of a batch, like Table 1 of the paper. A row is a variant, with
`+mimic` for R-CNN feature mimicking (`--mimic_rois` RoIs per image cropped to
`--mimic_crop` pixels, sized for CPU; the paper uses 32 and 224). Results also go
to `--out/ablation.json` and each run's `metrics.json`.
"""

import json
import os
import time

# TensorFlow's C++ info lines (CUDA probing, CPU features) would bury the progress
# display; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from models.common import console  # noqa: E402
from models.training import ablation  # noqa: E402
from models.training import synthetic_runs  # noqa: E402

FLAGS = flags.FLAGS
# The flags recorded in ablation.json.
_SETTINGS = ("out", "data", "variants", "train_images", "val_images", "size", "steps",
             "batch", "mimic_rois", "mimic_crop", "seed")


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("out", synthetic_runs.run_dir("ablation"), "results folder")
    flags.DEFINE_string("data", os.path.join("data", "synthetic_demo"), "data set folder")
    flags.DEFINE_list("variants", list(ablation.DEFAULT_ROWS),
                      "rows: variants, each optionally with +mimic")
    flags.DEFINE_integer("train_images", 600, "training images")
    flags.DEFINE_integer("val_images", 50, "validation images")
    flags.DEFINE_integer("size", 128, "image side (multiple of 32)")
    flags.DEFINE_integer("steps", 400, "training steps per variant")
    flags.DEFINE_integer("batch", 4, "global batch size")
    flags.DEFINE_integer("mimic_rois", 8, "RoIs per image")
    flags.DEFINE_integer("mimic_crop", 64, "crop side (pixels)")
    flags.DEFINE_integer("seed", 0, "random seed of the data, the models and training")


def main(_):
    """Trains, evaluates and measures every row; prints the table, writes ablation.json."""
    console.show_warnings_only()
    variants = [v for v in FLAGS.variants if v]
    data = synthetic_runs.prepare_data(FLAGS.data, FLAGS.train_images, FLAGS.val_images,
                                       FLAGS.size, FLAGS.seed)
    results = {}
    for variant in variants:
        started = time.perf_counter()
        print(f"\n== {variant}: {FLAGS.steps} steps of batch {FLAGS.batch}", flush=True)
        results[variant] = ablation.run_row(
            variant, data, FLAGS.out, FLAGS.size, FLAGS.batch, FLAGS.steps, FLAGS.seed,
            FLAGS.mimic_rois, FLAGS.mimic_crop)
        print(f"{variant} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    print(f"\nAblation on synthetic shapes ({FLAGS.size}x{FLAGS.size}, {FLAGS.steps} steps of "
          f"batch {FLAGS.batch}; AP in percent; times: medians of a training step and of the "
          f"inference pass of a batch):")
    print(ablation.results_table(results))
    settings = {name: FLAGS[name].value for name in _SETTINGS}
    os.makedirs(FLAGS.out, exist_ok=True)
    path = os.path.join(FLAGS.out, "ablation.json")
    with open(path, "w") as f:
        json.dump({"settings": settings, "results": results}, f, indent=2, sort_keys=True)
    print(f"results: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
