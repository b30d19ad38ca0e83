"""End-to-end demo on CPU: data, DCNv2 Mask R-CNN training, COCO evaluation,
SavedModel export, reload in a fresh process, picture of the predictions.

    python -m models.demo            # or: make demo
    python -m models.demo --steps=200 --size=128 --train_images=400 --out=runs/demo

1. draws the synthetic shapes set (`models.data`) and writes its TFRecords;
2. trains `dcn_maskrcnn_synthetic` (ResNet-18, slim heads, `--variant`, default
   dcnv2) with Keras `fit` on the task's losses, with a progress bar (checkpoints in
   `--out`; rerunning resumes);
3. evaluates box and mask AP with Model Garden's COCO evaluator (`--out/metrics.json`);
4. exports the detector with Model Garden's SavedModel export (`--out/export`);
5. in a fresh Python process, loads the SavedModel, detects on a validation image and
   draws boxes and masks (`--out/prediction.png`).

The defaults take about 10 minutes on 2 CPU cores (most of it training).
"""

import os
import subprocess
import sys
import time

# TensorFlow's C++ info lines (CUDA probing, CPU features) would bury the progress
# display; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from models.common import console  # noqa: E402
from models.common import runtime  # noqa: E402
from models.configs import maskrcnn as dcn_config  # noqa: E402
from models.configs.experiments import SYNTHETIC_EXPERIMENT  # noqa: E402
from models.evaluation import coco  # noqa: E402
from models.serving import detection  # noqa: E402
from models.training import keras_trainer  # noqa: E402
from models.training import synthetic_runs  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("out", synthetic_runs.run_dir("demo"), "run folder")
    flags.DEFINE_string("data", os.path.join("data", "synthetic_demo"), "data set folder")
    flags.DEFINE_integer("train_images", 600, "training images")
    flags.DEFINE_integer("val_images", 50, "validation images")
    flags.DEFINE_integer("size", 128, "image side (multiple of 32)")
    flags.DEFINE_integer("steps", 400, "training steps")
    flags.DEFINE_integer("batch", 4, "global batch size")
    flags.DEFINE_enum("variant", "dcnv2", sorted(dcn_config.VARIANTS) + [dcn_config.CUSTOM],
                      "model variant")
    flags.DEFINE_float("score_threshold", 0.15,
                       "draw detections above this score (a short run scores low)")
    flags.DEFINE_integer("seed", 0, "random seed of the data, the model and training")


def _stage(title):
    print(f"\n== {title}", flush=True)


def main(_):
    """Runs the five stages and prints where their results are."""
    console.show_warnings_only()
    started = time.perf_counter()
    tf_keras.utils.set_random_seed(FLAGS.seed)

    _stage(f"data: {FLAGS.train_images} + {FLAGS.val_images} synthetic images of "
           f"{FLAGS.size}x{FLAGS.size} in {FLAGS.data}")
    data = synthetic_runs.prepare_data(FLAGS.data, FLAGS.train_images, FLAGS.val_images,
                                       FLAGS.size, FLAGS.seed)
    print("reused (up to date)" if data["reused"] else "generated", flush=True)

    overrides = synthetic_runs.budget_overrides(
        data, FLAGS.size, FLAGS.batch, FLAGS.steps, FLAGS.variant, validation_steps=5,
        seed=FLAGS.seed)
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    _stage(f"training {dcn_config.describe(params.task.model)}; {FLAGS.steps} steps of "
           f"batch {FLAGS.batch} (Keras fit; checkpoints in {FLAGS.out})")
    timer = keras_trainer.StepTimer()
    model, _ = keras_trainer.train(params, FLAGS.out, verbose=1 if sys.stdout.isatty() else 2,
                                   callbacks=[timer])
    if timer.durations:
        print(f"median train step: {timer.median():.2f} s", flush=True)

    _stage("COCO evaluation (Model Garden's evaluator, pycocotools)")
    metrics = coco.evaluate_model(params, model, logging_dir=FLAGS.out)
    metrics["checkpoint"] = tf.train.latest_checkpoint(FLAGS.out)
    metrics_path = coco.write_metrics(metrics, FLAGS.out)
    print(coco.format_table({FLAGS.variant: metrics}), flush=True)

    _stage("SavedModel export (Model Garden's DetectionModule)")
    saved_model = detection.export_saved_model(params, FLAGS.out,
                                               os.path.join(FLAGS.out, "export"))
    print(saved_model, flush=True)

    _stage("reload in a fresh process and draw")
    image = os.path.join(data["root"], "val", "000001.png")
    picture = os.path.join(FLAGS.out, "prediction.png")
    subprocess.run(
        [sys.executable, "-m", "models.predict", f"--saved_model={saved_model}",
         f"--image={image}", f"--out={picture}",
         f"--score_threshold={FLAGS.score_threshold}",
         f"--class_names={','.join(synthetic_runs.CLASS_NAMES)}"],
        check=True)

    minutes = (time.perf_counter() - started) / 60
    _stage(f"done in {minutes:.1f} min")
    print(f"metrics:     {metrics_path}")
    print(f"checkpoint:  {metrics['checkpoint']}")
    print(f"SavedModel:  {saved_model}")
    print(f"picture:     {picture}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
