"""Ablation of the paper's Tables 1 and 3 on the synthetic set: regular / DCNv1 /
DCNv2, with and without R-CNN feature mimicking, each over several seeds.

    python -m models.ablation                       # or: make ablation
    python -m models.ablation --steps=3000 --seeds=0,1,2,3,4 --variants=regular,dcnv2

Every row trains on the demo's data set from the demo's pretrained backbone (both
made, or reused, as `make demo` makes them) with the same budget and schedule, once
per seed (Keras `fit`, checkpoints in `--out/<row>/seed<k>`; a finished run's
results are reused, an unfinished one resumes). Each run is evaluated with Model
Garden's COCO evaluator (box and mask AP, AP50, AP75, APs, APm, APl), its parameters
counted, its median training-step time and the median inference time of a batch
measured, and its offsets and modulation summarised per stage
(`models.evaluation.deformation_stats`). A row is a variant, with `+mimic` for R-CNN
feature mimicking (`--mimic_rois` RoIs per image cropped to `--mimic_crop` pixels,
sized for CPU; the paper uses 32 and 224).

Writes `--out/table.md` (mean +- standard deviation over seeds), `--out/table.json`
(every run, the summary and the check of the paper's ordering regular < dcnv1 <
dcnv2 <= dcnv2+mimic) and `--out/ablation.png` (bars with error bars).
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
from models.evaluation import ablation_report  # noqa: E402
from models.training import ablation  # noqa: E402
from models.training import pretraining  # noqa: E402
from models.training import synthetic_runs  # noqa: E402

FLAGS = flags.FLAGS
RESULT_NAME = "result.json"
# The flags recorded in table.json.
_SETTINGS = ("data", "variants", "seeds", "train_images", "val_images", "size", "steps",
             "batch", "learning_rate", "pretrain_steps", "pretrain_images", "mimic_rois",
             "mimic_crop", "data_seed")


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_string("out", synthetic_runs.run_dir("ablation"), "results folder")
    flags.DEFINE_string("data", os.path.join("data", "synthetic_demo"), "data set folder")
    flags.DEFINE_list("variants", list(ablation.DEFAULT_ROWS),
                      "rows: variants, each optionally with +mimic")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "training seeds of every row")
    flags.DEFINE_integer("train_images", 1000, "training images")
    flags.DEFINE_integer("val_images", 200, "validation images")
    flags.DEFINE_integer("size", 128, "image side (multiple of 32)")
    flags.DEFINE_integer("steps", 1500, "training steps per run")
    flags.DEFINE_integer("batch", 4, "global batch size")
    flags.DEFINE_float("learning_rate", 0.02, "peak learning rate (SGD, momentum 0.9)")
    flags.DEFINE_integer("pretrain_steps", pretraining.PretrainSettings.steps,
                         "steps of the backbone's classification pretraining "
                         "(0: train from scratch)")
    flags.DEFINE_integer("pretrain_images", pretraining.PretrainSettings.train_images,
                         "images the backbone learns to classify")
    flags.DEFINE_integer("mimic_rois", 8, "RoIs per image")
    flags.DEFINE_integer("mimic_crop", 64, "crop side (pixels)")
    flags.DEFINE_integer("data_seed", 0, "random seed of the data set and the pretraining")


def _run(row, seed, data, init_checkpoint):
    model_dir = os.path.join(FLAGS.out, row, f"seed{seed}")
    result_path = os.path.join(model_dir, RESULT_NAME)
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    result = ablation.run_row(row, data, model_dir, FLAGS.size, FLAGS.batch, FLAGS.steps,
                              seed, FLAGS.mimic_rois, FLAGS.mimic_crop,
                              init_checkpoint=init_checkpoint,
                              base_lr=FLAGS.learning_rate)
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def main(_):
    """Trains, evaluates and measures every row and seed; writes and prints the report."""
    console.show_warnings_only()
    started = time.perf_counter()
    rows = [v for v in FLAGS.variants if v]
    seeds = [int(s) for s in FLAGS.seeds if s]
    data = synthetic_runs.prepare_data(FLAGS.data, FLAGS.train_images, FLAGS.val_images,
                                       FLAGS.size, FLAGS.data_seed)
    init_checkpoint = None
    if FLAGS.pretrain_steps > 0:
        summary = synthetic_runs.pretrain_backbone(data, pretraining.PretrainSettings(
            train_images=FLAGS.pretrain_images,
            val_images=max(1, FLAGS.pretrain_images // 6),
            steps=FLAGS.pretrain_steps, seed=FLAGS.data_seed))
        init_checkpoint = summary["checkpoint"]
        print(f"pretrained backbone ({'reused' if summary['reused'] else 'trained'}): "
              f"validation accuracy {100 * summary['val_accuracy']:.1f}%", flush=True)
    runs = {row: [] for row in rows}
    total = len(rows) * len(seeds)
    for seed in seeds:
        for row in rows:
            done = sum(len(r) for r in runs.values())
            print(f"\n== [{done + 1}/{total}] {row}, seed {seed}: {FLAGS.steps} steps of "
                  f"batch {FLAGS.batch} ({(time.perf_counter() - started) / 60:.1f} min "
                  "so far)", flush=True)
            result = _run(row, seed, data, init_checkpoint)
            runs[row].append(result)
            box, mask = result["metrics"]["box"]["AP"], result["metrics"]["mask"]["AP"]
            print(f"box AP {100 * box:.1f}, mask AP {100 * mask:.1f}", flush=True)

    title = (f"Ablation on synthetic shapes ({FLAGS.size}x{FLAGS.size}, {FLAGS.steps} steps "
             f"of batch {FLAGS.batch} from the pretrained backbone, {len(seeds)} seeds; AP "
             "in percent, mean ± std; times: medians of a training step and of the "
             "inference pass of a batch)")
    settings = {name: FLAGS[name].value for name in _SETTINGS}
    paths = ablation_report.write_report(FLAGS.out, runs, settings, title)
    with open(paths["table.md"]) as f:
        print("\n" + f.read())
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    for name, path in paths.items():
        print(f"{name + ':':12} {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
