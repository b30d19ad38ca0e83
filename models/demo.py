"""End-to-end demo on CPU: data, DCNv2 Mask R-CNN training, COCO evaluation,
SavedModel export, reload in a fresh process, picture of the predictions.

    python -m models.demo            # or: make demo
    python -m models.demo --steps 200 --size 128 --train-images 400 --out runs/demo

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

import argparse
import os
import subprocess
import sys
import time

# TensorFlow's C++ info lines (CUDA probing, CPU features) would bury the progress
# display; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras

from models.common import runtime
from models.configs import maskrcnn as dcn_config
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.evaluation import coco
from models.serving import detection
from models.training import keras_trainer
from models.training import synthetic_runs


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m models.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=synthetic_runs.run_dir("demo"),
                        help="run folder (default runs/demo)")
    parser.add_argument("--data", default=os.path.join("data", "synthetic_demo"),
                        help="data set folder (default data/synthetic_demo)")
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--size", type=int, default=128, help="image side (multiple of 32)")
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--batch", type=int, default=4, help="global batch size")
    parser.add_argument("--variant", default="dcnv2",
                        choices=sorted(dcn_config.VARIANTS) + [dcn_config.CUSTOM])
    parser.add_argument("--score-threshold", type=float, default=0.15,
                        help="draw detections above this score (a short run scores low)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _stage(title):
    print(f"\n== {title}", flush=True)


def main(argv=None):
    args = _parse(argv)
    started = time.perf_counter()
    tf_keras.utils.set_random_seed(args.seed)

    _stage(f"data: {args.train_images} + {args.val_images} synthetic images of "
           f"{args.size}x{args.size} in {args.data}")
    data = synthetic_runs.prepare_data(args.data, args.train_images, args.val_images,
                                       args.size, args.seed)
    print("reused (up to date)" if data["reused"] else "generated", flush=True)

    overrides = synthetic_runs.budget_overrides(
        data, args.size, args.batch, args.steps, args.variant, validation_steps=5,
        seed=args.seed)
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    _stage(f"training {dcn_config.describe(params.task.model)}; {args.steps} steps of "
           f"batch {args.batch} (Keras fit; checkpoints in {args.out})")
    timer = keras_trainer.StepTimer()
    model, _ = keras_trainer.train(params, args.out, verbose=1 if sys.stdout.isatty() else 2,
                                   callbacks=[timer])
    if timer.durations:
        print(f"median train step: {timer.median():.2f} s", flush=True)

    _stage("COCO evaluation (Model Garden's evaluator, pycocotools)")
    metrics = coco.evaluate_model(params, model, logging_dir=args.out)
    metrics["checkpoint"] = tf.train.latest_checkpoint(args.out)
    metrics_path = coco.write_metrics(metrics, args.out)
    print(coco.format_table({args.variant: metrics}), flush=True)

    _stage("SavedModel export (Model Garden's DetectionModule)")
    saved_model = detection.export_saved_model(params, args.out,
                                               os.path.join(args.out, "export"))
    print(saved_model, flush=True)

    _stage("reload in a fresh process and draw")
    image = os.path.join(data["root"], "val", "000001.png")
    picture = os.path.join(args.out, "prediction.png")
    subprocess.run(
        [sys.executable, "-m", "models.predict", f"--saved_model={saved_model}",
         f"--image={image}", f"--out={picture}",
         f"--score_threshold={args.score_threshold}",
         f"--class_names={','.join(synthetic_runs.CLASS_NAMES)}"],
        check=True)

    minutes = (time.perf_counter() - started) / 60
    _stage(f"done in {minutes:.1f} min")
    print(f"metrics:     {metrics_path}")
    print(f"checkpoint:  {metrics['checkpoint']}")
    print(f"SavedModel:  {saved_model}")
    print(f"picture:     {picture}")


if __name__ == "__main__":
    main()
