"""Spatial support of the deformable Mask R-CNN: the pictures of Figures 1 and 2 of
the paper for trained runs (`keras_dcn.analysis`; definitions in its docstrings).

    python -m models.analyze                                  # or: make analysis
    python -m models.analyze --model_dir=regular=runs/ablation/regular/seed0 \\
        --model_dir=dcnv1=runs/ablation/dcnv1/seed0 --model_dir=dcnv2=runs/ablation/dcnv2/seed0
    python -m models.analyze --model_dir=runs/demo --image=photo.png \\
        --foreground=60,70 --background=10,12 --roi=30,40,100,110

For each run (a row; `--model_dir [NAME=]DIR`, repeatable, the name defaulting to the
run's variant) it rebuilds the model from `DIR/params.yaml` and the latest checkpoint,
then analyses three nodes of one image (`models.analysis.report`):

* a foreground and a background node in the last layer of the backbone stage `--level`
  (5: conv5, the paper's Figure 1): effective receptive field, effective sampling
  locations of the deformable convolutions of that stage (for a regular run, of its
  regular 3x3 convolutions, through zero offsets) and the error-bounded saliency region;
* the Fast R-CNN head's last fc features of a RoI (Figure 2): the same three, with the
  effective bin locations of the box RoI pooling (RoIAlign for a regular
  run, deformable RoI pooling otherwise).

The nodes come from `--foreground`, `--background` (`y,x` pixels of the image) and
`--roi` (`y1,x1,y2,x2`), or else from the image's COCO annotations (`--annotations`):
the deepest point of the largest instance, the background point farthest from every
instance, and that instance's box. By default the image is the first validation image
of the synthetic set in `--data` and its annotations.

Runs: by default `regular=runs/analysis/regular`, `dcnv1=runs/analysis/dcnv1` and
`dcnv2=runs/demo` (the demo's model). A default run, or a `NAME=DIR` run whose NAME is
a variant, that has no checkpoint yet is first trained the way `models.demo` trains
(the same recipe flags and defaults: data set, pretrained backbone, steps, batch and
schedule), so the three rows have the same budget. The analysis of three trained
runs takes about 30 seconds on 2 cores.

Writes `--out/figure1_conv<level>.png` (rows: runs; columns: the three modalities of
the foreground node, then of the background node), `--out/figure2_roi.png` (rows: runs;
columns: the three modalities of the RoI's fc node) and `--out/spatial_support.json`
(nodes, saliency-region sizes and errors, point counts).
"""

import os
import time

# TensorFlow's C++ info lines would bury the progress display.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from models import recipe_flags  # noqa: E402
from models.analysis import annotated_nodes  # noqa: E402
from models.analysis import report  # noqa: E402
from models.analysis import spatial_support  # noqa: E402
from models.common import console  # noqa: E402
from models.common import image_files  # noqa: E402
from models.configs import maskrcnn as dcn_config  # noqa: E402
from models.training import synthetic_runs  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_RUNS = (("regular", os.path.join("runs", "analysis", "regular")),
                ("dcnv1", os.path.join("runs", "analysis", "dcnv1")),
                ("dcnv2", synthetic_runs.run_dir("demo")))


def define_flags():
    """Defines the flags of this command."""
    flags.DEFINE_multi_string("model_dir", [],
                              "[NAME=]DIR: a run folder (repeatable); default: the three "
                              "variants")
    flags.DEFINE_string("out", os.path.join("runs", "analysis"), "results folder")
    flags.DEFINE_string("image", None,
                        "image to analyse (default: first validation image of --data)")
    flags.DEFINE_string("annotations", None, "COCO instances JSON holding --image")
    flags.DEFINE_string("foreground", None, "y,x pixel of the foreground node")
    flags.DEFINE_string("background", None, "y,x pixel of the background node")
    flags.DEFINE_string("roi", None, "y1,x1,y2,x2 of the RoI (pixels)")
    flags.DEFINE_integer("level", 5, "backbone stage of the Figure 1 nodes (2-5)")
    flags.DEFINE_float("error_bound", 0.1, "relative error of the saliency regions")
    flags.DEFINE_integer("patch_size", 8, "side of the saliency search's patches (pixels)")
    # Training of missing runs, as models.demo trains.
    recipe_flags.define_recipe_flags()


def _numbers(text, count, flag):
    """`count` numbers from a comma-separated `text`; ValueError naming `flag`."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ValueError(f"{flag} must be {count} comma-separated numbers, got {text!r}")
    return values


def parse_runs(specs):
    """`[(name or None, dir)]` from `[NAME=]DIR` strings; the defaults when empty."""
    if not specs:
        return list(DEFAULT_RUNS)
    runs = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        runs.append((name, path) if sep else (None, spec))
        if not runs[-1][1]:
            raise ValueError(f"--model_dir must be [NAME=]DIR, got {spec!r}")
    return runs


def ensure_trained(name, model_dir):
    """Trains `model_dir` as variant `name` like the demo when it has no checkpoint."""
    if tf.train.latest_checkpoint(model_dir):
        return
    recipe = recipe_flags.recipe_from_flags()
    if recipe.train_steps <= 0 or name not in dcn_config.VARIANTS:
        raise FileNotFoundError(
            f"no checkpoint in {model_dir}: train it, or name its variant "
            f"(--model_dir VARIANT=DIR) and give --steps > 0 to train it here")
    print(f"== training {name} in {model_dir}: {recipe.train_steps} steps of batch "
          f"{recipe.batch_size}", flush=True)
    synthetic_runs.train_variant(recipe, synthetic_runs.prepare(recipe), name, model_dir,
                                 validation_steps=5)


def given_nodes():
    """The nodes given by flags: `{'foreground': (y, x), 'background': (y, x),
    'roi': (y1, x1, y2, x2)}`, those present; checks the other flags too."""
    if FLAGS.level not in (2, 3, 4, 5):
        raise ValueError(f"--level must be a backbone stage 2-5, got {FLAGS.level}")
    if not 0 < FLAGS.error_bound < 1:
        raise ValueError(f"--error_bound must lie in (0, 1), got {FLAGS.error_bound}")
    if FLAGS.patch_size < 1:
        raise ValueError(f"--patch_size must be positive, got {FLAGS.patch_size}")
    nodes = {}
    for key, count in (("foreground", 2), ("background", 2), ("roi", 4)):
        text = FLAGS[key].value
        if text:
            nodes[key] = _numbers(text, count, f"--{key}")
    return nodes


def choose_nodes(image_path, annotations):
    """Nodes from the flags, completed from `annotations` (a COCO JSON holding the image
    `image_path`)."""
    nodes = given_nodes()
    if len(nodes) < 3:
        if not annotations:
            missing = ", ".join(f"--{k}" for k in ("foreground", "background", "roi")
                                if k not in nodes)
            raise ValueError(f"give {missing} or --annotations (a COCO JSON holding the image)")
        found = annotated_nodes.nodes_from_annotations(annotations, image_path)
        nodes = {**found, **nodes}
    return nodes


def main(_):
    """Trains missing runs, analyses every run, draws the figures, writes the summary."""
    console.show_warnings_only()
    started = time.perf_counter()
    runs = parse_runs(FLAGS.model_dir)
    given_nodes()  # bad flags fail before any training
    image_path, annotations = FLAGS.image, FLAGS.annotations
    if image_path is None:
        recipe = recipe_flags.recipe_from_flags()
        data = synthetic_runs.prepare_data(recipe.data_dir, recipe.train_images,
                                           recipe.val_images, recipe.image_size,
                                           recipe.data_seed, config=recipe.generator)
        image_path = os.path.join(data["root"], "val", "000001.png")
        annotations = annotations or data["annotation_file"]
    for name, model_dir in runs:
        ensure_trained(name, model_dir)

    image = image_files.read_rgb(image_path)
    nodes = choose_nodes(image_path, annotations)
    first = spatial_support.run_params(runs[0][1])
    canvas, scale = spatial_support.fit_image(image, first.task.model.input_size[:2])
    nodes = {key: tuple(v * scale for v in value) for key, value in nodes.items()}

    rows = {}
    for name, model_dir in runs:
        begun = time.perf_counter()
        tf_keras.backend.clear_session()
        result = report.analyse_run(model_dir, canvas, nodes, FLAGS.level, FLAGS.error_bound,
                                    FLAGS.patch_size)
        label = name or result["variant"]
        rows[label if label not in rows else f"{label} ({model_dir})"] = result
        print(f"== analysed {model_dir} ({result['described']}) in "
              f"{time.perf_counter() - begun:.0f} s", flush=True)

    os.makedirs(FLAGS.out, exist_ok=True)
    paths = report.draw_figures(rows, canvas, nodes, FLAGS.level, FLAGS.error_bound, FLAGS.out)
    summary_path = report.write_summary(rows, nodes, FLAGS.out)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    for path in (*paths, summary_path):
        print(path)


if __name__ == "__main__":
    define_flags()
    app.run(main)
