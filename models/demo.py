"""End-to-end demo on CPU: data, backbone pretraining, DCNv2 Mask R-CNN training, COCO
evaluation, SavedModel export, reload in a fresh process, pictures.

    python -m models.demo            # or: make demo
    python -m models.demo --steps=600 --train_images=400 --out=runs/demo_short

1. draws the synthetic shapes set (`models.data.synthetic`, the setting of
   `models.training.synthetic_runs.DEMO_DATA`) and writes its TFRecords;
2. pretrains the regular ResNet-18 on classifying single shapes (the stand-in for
   the paper's ImageNet initialisation; cached with the data, so a rerun skips it);
3. trains `dcn_maskrcnn_synthetic` (`--variant`, default dcnv2) from that backbone
   with Keras `fit` on the task's losses (checkpoints and TensorBoard logs in
   `--out`; rerunning resumes), with box and mask AP on the validation split every
   `--eval_interval` steps;
4. evaluates box and mask AP on the whole validation split with Model Garden's COCO
   evaluator (`--out/metrics.json`) and draws the losses and APs over training
   (`--out/learning_curves.png`);
5. exports the detector with Model Garden's SavedModel export (`--out/export`);
6. in a fresh Python process, loads the SavedModel, detects on validation images and
   draws them beside their ground truth (`--out/prediction.png`).
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

from models import recipe_flags  # noqa: E402
from models.common import console  # noqa: E402
from models.configs import maskrcnn as dcn_config  # noqa: E402
from models.evaluation import coco  # noqa: E402
from models.serving import detection  # noqa: E402
from models.training import keras_trainer  # noqa: E402
from models.training import learning_curves  # noqa: E402
from models.training import synthetic_runs  # noqa: E402
from models.training import validation_ap  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this command."""
    recipe_flags.define_recipe_flags()
    flags.DEFINE_string("out", synthetic_runs.run_dir("demo"), "run folder")
    flags.DEFINE_enum("variant", "dcnv2", sorted(dcn_config.VARIANTS) + [dcn_config.CUSTOM],
                      "model variant")
    flags.DEFINE_integer("seed", 0, "random seed of the model and its training")
    flags.DEFINE_integer("eval_interval", 500,
                         "steps between validation APs during training (0: none)")
    flags.DEFINE_float("score_threshold", 0.5, "draw detections at this score or above")
    flags.DEFINE_integer("pictures", 6, "validation images in prediction.png")


def _stage(title):
    print(f"\n== {title}", flush=True)


def main(_):
    """Runs the stages and prints where their results are."""
    console.show_warnings_only()
    started = time.perf_counter()
    tf_keras.utils.set_random_seed(FLAGS.seed)
    recipe = recipe_flags.recipe_from_flags()
    _stage(f"data: {recipe.train_images} + {recipe.val_images} synthetic images of "
           f"{recipe.image_size}x{recipe.image_size} in {recipe.data_dir}")
    data = synthetic_runs.prepare_data(recipe.data_dir, recipe.train_images,
                                       recipe.val_images, recipe.image_size,
                                       recipe.data_seed, config=recipe.generator)
    print("reused (up to date)" if data["reused"] else "generated", flush=True)

    summary = None
    if recipe.pretrain.steps > 0:
        settings = recipe.pretrain
        _stage(f"backbone pretraining: classifying {settings.train_images} single shapes "
               f"of {settings.image_size}x{settings.image_size}, {settings.steps} steps "
               f"of batch {settings.batch_size}")
        summary = synthetic_runs.pretrain_backbone(data, settings)
        print(f"{'reused' if summary['reused'] else 'trained'}: validation accuracy "
              f"{100 * summary['val_accuracy']:.1f}% ({summary['checkpoint']})", flush=True)
    prepared = synthetic_runs.Prepared(data, summary)

    params = synthetic_runs.experiment(recipe, prepared, FLAGS.variant, FLAGS.seed,
                                       validation_steps=5)
    _stage(f"training {dcn_config.describe(params.task.model)}; {recipe.train_steps} steps "
           f"of batch {recipe.batch_size} (Keras fit; checkpoints and TensorBoard logs in "
           f"{FLAGS.out})")
    timer = keras_trainer.StepTimer()
    callbacks = [timer]
    if FLAGS.eval_interval > 0:
        callbacks.append(validation_ap.PeriodicCocoEvaluation(params, FLAGS.out,
                                                              FLAGS.eval_interval))
    model, _ = keras_trainer.train(params, FLAGS.out, verbose=1 if sys.stdout.isatty() else 2,
                                   callbacks=callbacks)
    if timer.durations:
        print(f"median train step: {timer.median():.2f} s", flush=True)

    _stage(f"COCO evaluation on the {recipe.val_images} validation images "
           "(Model Garden's evaluator, pycocotools)")
    metrics = coco.evaluate_model(params, model, logging_dir=FLAGS.out)
    step = int(model.optimizer.iterations.numpy())
    validation_ap.append_history(FLAGS.out, step, metrics)
    metrics["checkpoint"] = tf.train.latest_checkpoint(FLAGS.out)
    metrics_path = coco.write_metrics(metrics, FLAGS.out)
    print(coco.format_table({FLAGS.variant: metrics}), flush=True)
    curves = learning_curves.plot_learning_curves(
        FLAGS.out, os.path.join(FLAGS.out, "learning_curves.png"),
        title=dcn_config.describe(params.task.model))

    _stage("SavedModel export (Model Garden's DetectionModule)")
    saved_model = detection.export_saved_model(params, FLAGS.out,
                                               os.path.join(FLAGS.out, "export"))
    print(saved_model, flush=True)

    _stage("reload in a fresh process and draw")
    images = [os.path.join(data["root"], "val", f"{index:06d}.png")
              for index in range(1, min(FLAGS.pictures, recipe.val_images) + 1)]
    picture = os.path.join(FLAGS.out, "prediction.png")
    subprocess.run(
        [sys.executable, "-m", "models.predict", f"--saved_model={saved_model}",
         f"--image={','.join(images)}", f"--annotations={data['annotation_file']}",
         f"--out={picture}", f"--score_threshold={FLAGS.score_threshold}",
         f"--class_names={','.join(synthetic_runs.CLASS_NAMES)}"],
        check=True)

    minutes = (time.perf_counter() - started) / 60
    _stage(f"done in {minutes:.1f} min")
    print(f"metrics:          {metrics_path}")
    print(f"checkpoint:       {metrics['checkpoint']}")
    print(f"SavedModel:       {saved_model}")
    print(f"learning curves:  {curves}")
    print(f"picture:          {picture}")
    print(f"TensorBoard:      tensorboard --logdir={FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
