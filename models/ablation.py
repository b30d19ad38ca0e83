"""Ablation of the paper's Tables 1 and 3 on the synthetic set: regular / DCNv1 /
DCNv2, with and without R-CNN feature mimicking, each over several seeds.

    python -m models.ablation                       # or: make ablation
    python -m models.ablation --steps=3000 --seeds=0,1,2,3,4 --variants=regular,dcnv2

Every row trains on the demo's data set from the demo's pretrained backbone (both
made, or reused, as `make demo` makes them) with the demo's budget and schedule
(`--steps`, 1500 by default), once per seed (Keras
`fit`, checkpoints in `--out/<row>/seed<k>`; a finished run's results are reused, an
unfinished one resumes). Each run is evaluated with Model Garden's COCO evaluator
(box and mask AP, AP50, AP75, APs, APm, APl), its parameters counted and its
offsets and modulation summarised per stage (`models.evaluation.deformation_stats`).
Then the rows' training steps and inference passes are timed side by side, taking
turns in one process for `--timing_rounds` rounds (each row with the weights of its
first seed), so that their times compare; the times each run measured while it
trained are kept in `table.json`.
A row is a variant, with `+mimic` for R-CNN feature mimicking (`--mimic_rois` RoIs
per image cropped to `--mimic_crop` pixels, sized for CPU; the paper uses 32 and 224).

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

from models import recipe_flags  # noqa: E402
from models.common import console  # noqa: E402
from models.evaluation import ablation_report  # noqa: E402
from models.training import ablation  # noqa: E402
from models.training import synthetic_runs  # noqa: E402

FLAGS = flags.FLAGS
RESULT_NAME = "result.json"


def define_flags():
    """Defines the flags of this command."""
    recipe_flags.define_recipe_flags()
    flags.DEFINE_string("out", synthetic_runs.run_dir("ablation"), "results folder")
    flags.DEFINE_list("variants", list(ablation.DEFAULT_ROWS),
                      "rows: variants, each optionally with +mimic")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "training seeds of every row")
    flags.DEFINE_integer("mimic_rois", 8, "RoIs per image")
    flags.DEFINE_integer("mimic_crop", 64, "crop side (pixels)")
    flags.DEFINE_integer("timing_rounds", 12,
                         "rounds of the side-by-side timing of the rows' steps and "
                         "inference passes")


def _run(row, seed, recipe, prepared, settings):
    """A run's results: those saved in its folder when they were made with the same
    `settings`, else trains and evaluates it (resuming its checkpoints)."""
    model_dir = os.path.join(FLAGS.out, row, f"seed{seed}")
    result_path = os.path.join(model_dir, RESULT_NAME)
    if os.path.exists(result_path):
        with open(result_path) as f:
            saved = json.load(f)
        changed = sorted(k for k in settings if saved.get("settings", {}).get(k) != settings[k])
        if changed:
            raise ValueError(
                f"{model_dir} holds a run made with other settings ({', '.join(changed)}); "
                "give another --out or remove that folder")
        return saved
    result = ablation.run_row(row, recipe, prepared, model_dir, seed, FLAGS.mimic_rois,
                              FLAGS.mimic_crop)
    result["settings"] = settings
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def main(_):
    """Trains, evaluates and measures every row and seed; writes and prints the report."""
    console.show_warnings_only()
    started = time.perf_counter()
    rows = [v for v in FLAGS.variants if v]
    seeds = [int(s) for s in FLAGS.seeds if s]
    recipe = recipe_flags.recipe_from_flags()
    prepared = synthetic_runs.prepare(recipe)
    if prepared.pretraining:
        print(f"pretrained backbone ({'reused' if prepared.pretraining['reused'] else 'trained'}"
              f"): validation accuracy {100 * prepared.pretraining['val_accuracy']:.1f}%",
              flush=True)
    settings = {**recipe_flags.recipe_settings(), "mimic_rois": FLAGS.mimic_rois,
                "mimic_crop": FLAGS.mimic_crop}
    runs = {row: [] for row in rows}
    total = len(rows) * len(seeds)
    for seed in seeds:
        for row in rows:
            done = sum(len(r) for r in runs.values())
            print(f"\n== [{done + 1}/{total}] {row}, seed {seed}: {recipe.train_steps} "
                  f"steps of batch {recipe.batch_size} "
                  f"({(time.perf_counter() - started) / 60:.1f} min so far)", flush=True)
            result = _run(row, seed, recipe, prepared, settings)
            runs[row].append(result)
            box, mask = result["metrics"]["box"]["AP"], result["metrics"]["mask"]["AP"]
            print(f"box AP {100 * box:.1f}, mask AP {100 * mask:.1f}", flush=True)

    print(f"\ntiming the rows side by side ({FLAGS.timing_rounds} rounds)", flush=True)
    timings = ablation.side_by_side_times(
        rows, recipe, prepared, FLAGS.mimic_rois, FLAGS.mimic_crop,
        {row: os.path.join(FLAGS.out, row, f"seed{seeds[0]}") for row in rows},
        rounds=FLAGS.timing_rounds)
    start = "the pretrained backbone" if prepared.pretraining else "scratch"
    title = (f"Ablation on synthetic shapes ({recipe.image_size}x{recipe.image_size}, "
             f"{recipe.train_steps} steps of batch {recipe.batch_size} from {start}, "
             f"{len(seeds)} seeds; AP in percent, mean ± std; times: medians of a training "
             "step and of the inference pass of a batch, the rows timed side by side)")
    paths = ablation_report.write_report(
        FLAGS.out, runs, {**settings, "variants": rows, "seeds": seeds}, title, timings)
    with open(paths["table.md"]) as f:
        print("\n" + f.read())
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    for name, path in paths.items():
        print(f"{name + ':':12} {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
