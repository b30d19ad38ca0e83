"""Ablation of the paper's Tables 1 and 3 on the synthetic set: regular / DCNv1 /
DCNv2, with and without R-CNN feature mimicking.

    python -m models.ablation                       # or: make ablation
    python -m models.ablation --steps 2000 --size 256 --variants regular,dcnv2+mimic

Trains each row of `dcn_maskrcnn_synthetic` with the same budget, data, seed and
schedule (Keras `fit`, checkpoints in `--out/<row>`; rerunning resumes), evaluates
box and mask AP with Model Garden's COCO evaluator, and prints them side by side with
the parameter count (inference model), the median training-step time and the median
inference time of a batch, like Table 1 of the paper. A row is a variant, with
`+mimic` for R-CNN feature mimicking (`--mimic-rois` RoIs per image cropped to
`--mimic-crop` pixels, sized for CPU; the paper uses 32 and 224). Results also go
to `--out/ablation.json` and each run's `metrics.json`.
"""

import argparse
import gc
import json
import os
import time

# TensorFlow's C++ info lines (CUDA probing, CPU features) would bury the progress
# display; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from official.core import task_factory

from models.configs import maskrcnn as dcn_config
from models.evaluation import coco
from models.training import keras_trainer
from models.training import synthetic_runs

DEFAULT_ROWS = ("regular", "dcnv1", "dcnv2", "regular+mimic", "dcnv2+mimic")
MIMIC_SUFFIX = "+mimic"


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m models.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=synthetic_runs.run_dir("ablation"))
    parser.add_argument("--data", default=os.path.join("data", "synthetic_demo"))
    parser.add_argument("--variants", default=",".join(DEFAULT_ROWS),
                        help="rows: variants, each optionally with +mimic")
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400, help="training steps per variant")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--mimic-rois", type=int, default=8, help="RoIs per image")
    parser.add_argument("--mimic-crop", type=int, default=64, help="crop side (pixels)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _deformable_columns(params):
    resolved = dcn_config.resolve_variant(params.task.model)
    cfg = resolved.backbone.dcn_resnet
    stages = "-".join(f"conv{s}" for s in cfg.deformable_stages) if cfg.deformable_stages \
        else "none"
    conv = f"{stages}{' (mod.)' if cfg.modulated and cfg.deformable_stages else ''}"
    aligner = resolved.roi_aligner
    pool = "modulated" if aligner.deformable and aligner.modulated else \
        "yes" if aligner.deformable else "no"
    return {"deform. conv": conv, "deform. RoI pool": pool,
            "mimic": "yes" if resolved.mimic.enabled else "no"}


def inference_seconds(params, model, repeats: int = 10) -> float:
    """Median time of the model's inference pass on one validation batch."""
    task = task_factory.get_task(params.task)
    images, labels = next(iter(task.build_inputs(params.task.validation_data)))
    infer = tf.function(lambda x: model(x, image_shape=labels["image_info"][:, 1, :],
                                        training=False))
    infer(images)  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), infer(images))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def inference_params(model) -> int:
    """Parameters of the inference model (without the training-only branches)."""
    training_only = model.mimic_branch.count_params() if model.mimic_branch else 0
    return int(model.count_params()) - training_only


def run_variant(row, data, args):
    """Trains and evaluates one row (`variant` or `variant+mimic`); returns its results."""
    variant = row[:-len(MIMIC_SUFFIX)] if row.endswith(MIMIC_SUFFIX) else row
    mimic = {"enabled": row.endswith(MIMIC_SUFFIX), "rois_per_image": args.mimic_rois,
             "crop_size": args.mimic_crop}
    model_dir = os.path.join(args.out, row)
    timer = keras_trainer.StepTimer()
    params, model = synthetic_runs.train_variant(
        data, variant, model_dir, args.size, args.batch, args.steps, args.seed,
        validation_steps=2, overrides={"task": {"model": {"mimic": mimic}}},
        callbacks=[timer])
    metrics = coco.evaluate_model(params, model, logging_dir=model_dir)
    coco.write_metrics(metrics, model_dir)
    result = {
        "metrics": metrics,
        "params": inference_params(model),
        "step_s": timer.median() if timer.durations else None,
        "inference_s": inference_seconds(params, model),
        **_deformable_columns(params),
    }
    del model
    gc.collect()
    return result


def main(argv=None):
    args = _parse(argv)
    variants = [v for v in args.variants.split(",") if v]
    data = synthetic_runs.prepare_data(args.data, args.train_images, args.val_images,
                                       args.size, args.seed)
    results = {}
    for variant in variants:
        started = time.perf_counter()
        print(f"\n== {variant}: {args.steps} steps of batch {args.batch}", flush=True)
        results[variant] = run_variant(variant, data, args)
        print(f"{variant} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    extra = {v: {"deform. conv": r["deform. conv"],
                 "deform. RoI pool": r["deform. RoI pool"],
                 "mimic": r["mimic"],
                 "params (M)": f"{r['params'] / 1e6:.2f}",
                 "train step (s)": f"{r['step_s']:.2f}" if r["step_s"] else "-",
                 "inference (s)": f"{r['inference_s']:.3f}"}
             for v, r in results.items()}
    print(f"\nAblation on synthetic shapes ({args.size}x{args.size}, {args.steps} steps of "
          f"batch {args.batch}; AP in percent; times: medians of a training step and of the "
          f"inference pass of a batch):")
    print(coco.format_table({v: r["metrics"] for v, r in results.items()}, extra))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "ablation.json")
    with open(path, "w") as f:
        json.dump({"settings": vars(args), "results": results}, f, indent=2, sort_keys=True)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
