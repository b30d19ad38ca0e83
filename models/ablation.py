"""Ablation of the paper's Table 1 on the synthetic set: regular / DCNv1 / DCNv2.

    python -m models.ablation                       # or: make ablation
    python -m models.ablation --steps 2000 --size 256 --variants regular,dcnv2

Trains each variant of `dcn_maskrcnn_synthetic` with the same budget, data, seed and
schedule (Keras `fit`, checkpoints in `--out/<variant>`; rerunning resumes), evaluates
box and mask AP with Model Garden's COCO evaluator, and prints them side by side with
the parameter count and the median training-step time, like Table 1 of the paper.
Results also go to `--out/ablation.json` and each run's `metrics.json`.
"""

import argparse
import gc
import json
import os
import time

import tf_keras

from models import evaluate
from models import runtime
from models import synthetic_run
from models.maskrcnn import config as dcn_config
from models.maskrcnn import keras_train
from models.maskrcnn.experiments import SYNTHETIC_EXPERIMENT

DEFAULT_VARIANTS = ("regular", "dcnv1", "dcnv2")


def _parse(argv):
  parser = argparse.ArgumentParser(prog="python -m models.ablation", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default=synthetic_run.run_dir("ablation"))
  parser.add_argument("--data", default=os.path.join("data", "synthetic_demo"))
  parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
  parser.add_argument("--train-images", type=int, default=600)
  parser.add_argument("--val-images", type=int, default=50)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=400, help="training steps per variant")
  parser.add_argument("--batch", type=int, default=4)
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
  return {"deform. conv": conv, "deform. RoI pool": pool}


def run_variant(variant, data, args):
  """Trains and evaluates one variant; returns its row of results."""
  params = runtime.experiment_params(
      SYNTHETIC_EXPERIMENT,
      synthetic_run.budget_overrides(data, args.size, args.batch, args.steps, variant,
                                     validation_steps=2, seed=args.seed))
  model_dir = os.path.join(args.out, variant)
  tf_keras.backend.clear_session()
  tf_keras.utils.set_random_seed(args.seed)
  timer = keras_train.StepTimer()
  model, _ = keras_train.train(params, model_dir, validate=False, verbose=2,
                               callbacks=[timer])
  metrics = evaluate.evaluate_model(params, model, logging_dir=model_dir)
  evaluate.write_metrics(metrics, model_dir)
  row = {
      "metrics": metrics,
      "params": int(model.count_params()),
      "step_s": timer.median() if timer.durations else None,
      **_deformable_columns(params),
  }
  del model
  gc.collect()
  return row


def main(argv=None):
  args = _parse(argv)
  variants = [v for v in args.variants.split(",") if v]
  data = synthetic_run.prepare_data(args.data, args.train_images, args.val_images,
                                    args.size, args.seed)
  results = {}
  for variant in variants:
    started = time.perf_counter()
    print(f"\n== {variant}: {args.steps} steps of batch {args.batch}", flush=True)
    results[variant] = run_variant(variant, data, args)
    print(f"{variant} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)

  extra = {v: {"deform. conv": r["deform. conv"],
               "deform. RoI pool": r["deform. RoI pool"],
               "params (M)": f"{r['params'] / 1e6:.2f}",
               "step (s)": f"{r['step_s']:.2f}" if r["step_s"] else "-"}
           for v, r in results.items()}
  print(f"\nAblation on synthetic shapes ({args.size}x{args.size}, {args.steps} steps of "
        f"batch {args.batch}; AP in percent, step time: median train step):")
  print(evaluate.format_table({v: r["metrics"] for v, r in results.items()}, extra))
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "ablation.json")
  with open(path, "w") as f:
    json.dump({"settings": vars(args), "results": results}, f, indent=2, sort_keys=True)
  print(f"results: {path}")


if __name__ == "__main__":
  main()
