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
import json
import os
import time

# TensorFlow's C++ info lines (CUDA probing, CPU features) would bury the progress
# display; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models.training import ablation  # noqa: E402
from models.training import synthetic_runs  # noqa: E402


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m models.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=synthetic_runs.run_dir("ablation"))
    parser.add_argument("--data", default=os.path.join("data", "synthetic_demo"))
    parser.add_argument("--variants", default=",".join(ablation.DEFAULT_ROWS),
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


def main(argv=None):
    """Trains, evaluates and measures every row; prints the table, writes ablation.json."""
    args = _parse(argv)
    variants = [v for v in args.variants.split(",") if v]
    data = synthetic_runs.prepare_data(args.data, args.train_images, args.val_images,
                                       args.size, args.seed)
    results = {}
    for variant in variants:
        started = time.perf_counter()
        print(f"\n== {variant}: {args.steps} steps of batch {args.batch}", flush=True)
        results[variant] = ablation.run_row(
            variant, data, args.out, args.size, args.batch, args.steps, args.seed,
            args.mimic_rois, args.mimic_crop)
        print(f"{variant} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    print(f"\nAblation on synthetic shapes ({args.size}x{args.size}, {args.steps} steps of "
          f"batch {args.batch}; AP in percent; times: medians of a training step and of the "
          f"inference pass of a batch):")
    print(ablation.results_table(results))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "ablation.json")
    with open(path, "w") as f:
        json.dump({"settings": vars(args), "results": results}, f, indent=2, sort_keys=True)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
