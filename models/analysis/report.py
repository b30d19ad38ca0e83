"""Spatial support of the deformable Mask R-CNN: the pictures of Figures 1 and 2 of
the paper for trained runs (`keras_dcn.analysis`; definitions in its docstrings).

    python -m models.analyze                                  # or: make analysis
    python -m models.analyze --model_dir regular=runs/ablation/regular \\
        --model_dir dcnv1=runs/ablation/dcnv1 --model_dir dcnv2=runs/ablation/dcnv2
    python -m models.analyze --model_dir runs/demo --image photo.png \\
        --foreground 60,70 --background 10,12 --roi 30,40,100,110

For each run (a row; `--model_dir [NAME=]DIR`, repeatable, the name defaulting to the
run's variant) it rebuilds the model from `DIR/params.yaml` and the latest checkpoint
(`models.analysis.spatial_support`), then analyses three nodes of one image:

* a foreground and a background node in the last layer of the backbone stage `--level`
  (5: conv5, the paper's Figure 1): effective receptive field, effective sampling
  locations of the deformable convolutions of that stage (for a regular run, of its
  regular 3x3 convolutions, through zero offsets) and the error-bounded saliency region;
* the Fast R-CNN head's last fc features of a RoI (Figure 2): the same three, with the
  effective bin locations of the box RoI pooling (Model Garden's RoIAlign for a regular
  run, deformable RoI pooling otherwise).

The nodes come from `--foreground`, `--background` (`y,x` pixels of the image) and
`--roi` (`y1,x1,y2,x2`), or else from the image's COCO annotations (`--annotations`):
the deepest point of the largest instance, the background point farthest from every
instance, and that instance's box. By default the image is the first validation image
of the synthetic set in `--data` and its annotations.

Runs: by default `regular=runs/analysis/regular`, `dcnv1=runs/analysis/dcnv1` and
`dcnv2=runs/demo` (the demo's model). A default run, or a `NAME=DIR` run whose NAME is
a variant, that has no checkpoint yet is first trained the way `models.demo` trains
(the synthetic set in `--data`, `--steps` steps of batch `--batch`, same seed and
schedule), so the three rows have the same budget. On 2 cores the defaults train
three runs of 400 steps in about 16 minutes, two (about 11 minutes) when runs/demo
exists; the analysis of the three runs takes about 30 seconds.

Writes `--out/figure1_conv<level>.png` (rows: runs; columns: the three modalities of
the foreground node, then of the background node), `--out/figure2_roi.png` (rows: runs;
columns: the three modalities of the RoI's fc node) and `--out/spatial_support.json`
(nodes, saliency-region sizes and errors, point counts).
"""

import argparse
import json
import os
import time

# TensorFlow's C++ info lines would bury the progress display.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from keras_dcn import analysis  # noqa: E402
from models.analysis import figures  # noqa: E402
from models.analysis import spatial_support  # noqa: E402
from models.configs import maskrcnn as dcn_config  # noqa: E402
from models.serving import detector  # noqa: E402
from models.serving import drawing  # noqa: E402
from models.training import synthetic_runs  # noqa: E402

DEFAULT_RUNS = (("regular", os.path.join("runs", "analysis", "regular")),
                ("dcnv1", os.path.join("runs", "analysis", "dcnv1")),
                ("dcnv2", synthetic_runs.run_dir("demo")))
MODALITIES = ("effective receptive field", "effective sampling locations",
              "error-bounded saliency region")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m models.analyze", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", action="append", default=[], metavar="[NAME=]DIR",
                        help="a run folder (repeatable); default: the three variants")
    parser.add_argument("--out", default=os.path.join("runs", "analysis"))
    parser.add_argument("--image", help="image to analyse (default: first validation "
                        "image of --data)")
    parser.add_argument("--annotations", help="COCO instances JSON holding --image")
    parser.add_argument("--foreground", help="y,x pixel of the foreground node")
    parser.add_argument("--background", help="y,x pixel of the background node")
    parser.add_argument("--roi", help="y1,x1,y2,x2 of the RoI (pixels)")
    parser.add_argument("--level", type=int, default=5, help="backbone stage of the "
                        "Figure 1 nodes (2-5)")
    parser.add_argument("--error_bound", type=float, default=0.1,
                        help="relative error of the saliency regions")
    parser.add_argument("--patch_size", type=int, default=8,
                        help="side of the saliency search's patches (pixels)")
    # Training of missing runs, as models.demo trains.
    parser.add_argument("--data", default=os.path.join("data", "synthetic_demo"))
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400,
                        help="training steps of a missing run (0: never train)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


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


def ensure_trained(name, model_dir, args):
    """Trains `model_dir` as variant `name` like the demo when it has no checkpoint."""
    if tf.train.latest_checkpoint(model_dir):
        return
    if args.steps <= 0 or name not in dcn_config.VARIANTS:
        raise FileNotFoundError(
            f"no checkpoint in {model_dir}: train it, or name its variant "
            f"(--model_dir VARIANT=DIR) and give --steps > 0 to train it here")
    print(f"== training {name} in {model_dir}: {args.steps} steps of batch {args.batch}",
          flush=True)
    data = synthetic_runs.prepare_data(args.data, args.train_images, args.val_images,
                                       args.size, args.seed)
    synthetic_runs.train_variant(data, name, model_dir, args.size, args.batch, args.steps,
                                 args.seed, validation_steps=5)


def _instance_masks(annotations_path, image_path):
    """bool `[n, h, w]` instance masks and `[n, 4]` boxes `(y1, x1, y2, x2)` of the
    image whose file name is `image_path`'s, from a COCO instances JSON."""
    from pycocotools import mask as mask_utils
    with open(annotations_path) as f:
        coco = json.load(f)
    name = os.path.basename(image_path)
    images = [im for im in coco["images"] if os.path.basename(im["file_name"]) == name]
    if not images:
        raise ValueError(f"--annotations {annotations_path} has no image named {name!r}")
    anns = [a for a in coco["annotations"] if a["image_id"] == images[0]["id"]]
    if not anns:
        raise ValueError(f"image {name!r} has no instance in {annotations_path}")
    masks, boxes = [], []
    for ann in anns:
        rle = dict(ann["segmentation"])
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        masks.append(mask_utils.decode(rle).astype(bool))
        x, y, w, h = ann["bbox"]
        boxes.append((y, x, y + h, x + w))
    return np.stack(masks), np.asarray(boxes, np.float64)


def nodes_from_annotations(annotations_path, image_path):
    """`{'foreground': (y, x), 'background': (y, x), 'roi': box}` in the image's pixels:
    the deepest point of the largest instance, the background point farthest from all
    instances, and the largest instance's box."""
    import cv2
    masks, boxes = _instance_masks(annotations_path, image_path)
    largest = int(np.argmax(masks.reshape(len(masks), -1).sum(axis=1)))

    def deepest(region):
        padded = np.pad(region.astype(np.uint8), 1)  # the image border counts as outside
        depth = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        return tuple(int(v) for v in np.unravel_index(np.argmax(depth), depth.shape))

    return {"foreground": deepest(masks[largest]),
            "background": deepest(~masks.any(axis=0)),
            "roi": tuple(float(v) for v in boxes[largest])}


def given_nodes(args):
    """The nodes given by flags: `{'foreground': (y, x), 'background': (y, x),
    'roi': (y1, x1, y2, x2)}`, those present; checks the other flags too."""
    if args.level not in (2, 3, 4, 5):
        raise ValueError(f"--level must be a backbone stage 2-5, got {args.level}")
    if not 0 < args.error_bound < 1:
        raise ValueError(f"--error_bound must lie in (0, 1), got {args.error_bound}")
    if args.patch_size < 1:
        raise ValueError(f"--patch_size must be positive, got {args.patch_size}")
    nodes = {}
    for key, count in (("foreground", 2), ("background", 2), ("roi", 4)):
        text = getattr(args, key)
        if text:
            nodes[key] = _numbers(text, count, f"--{key}")
    return nodes


def choose_nodes(args):
    """Nodes from the flags, completed from the annotations."""
    nodes = given_nodes(args)
    if len(nodes) < 3:
        if not args.annotations:
            missing = ", ".join(f"--{k}" for k in ("foreground", "background", "roi")
                                if k not in nodes)
            raise ValueError(f"give {missing} or --annotations (a COCO JSON holding the image)")
        found = nodes_from_annotations(args.annotations, args.image)
        nodes = {**found, **nodes}
    return nodes


def analyse(node, image, layers, keep, args):
    """The three modalities of `node`: `{'field', 'points', 'weights', 'region'}`."""
    field = analysis.effective_receptive_field(node, image)
    locations = [loc for loc in analysis.effective_sampling_locations(node, image, layers)
                 if keep(loc)]
    supports = [loc.support() for loc in locations]
    points = np.concatenate([p for p, _ in supports] or [np.zeros((0, 2))])
    weights = np.concatenate([w for _, w in supports] or [np.zeros((0,))])
    region = analysis.error_bounded_saliency_region(
        node, image, error_bound=args.error_bound, patch_size=args.patch_size,
        importance=field)
    return {"field": field, "points": points, "weights": weights, "region": region,
            "layers": [loc.layer for loc in locations]}


def analyse_run(model_dir, canvas, nodes, args):
    """Results of the three nodes for one run, with its variant name."""
    params = spatial_support.run_params(model_dir)
    model = spatial_support.load_model(params, model_dir, probe_stages=(args.level,))
    convs, pools = spatial_support.probed_layers(model)
    stride = 2 ** args.level
    level_size = (canvas.shape[0] // stride, canvas.shape[1] // stride)
    image = canvas.astype(np.float32)
    results = {"variant": params.task.model.variant,
               "described": dcn_config.describe(params.task.model),
               "pooling": dcn_config.roi_pooling_name(params.task.model)}
    for key in ("foreground", "background"):
        y, x = nodes[key]
        position = (min(int(y) // stride, level_size[0] - 1),
                    min(int(x) // stride, level_size[1] - 1))
        node = spatial_support.backbone_node(model, args.level, position)
        results[key] = analyse(node, image, convs,
                               lambda loc: loc.points.shape[:2] == level_size, args)
        results[key]["position"] = position
    results["roi"] = analyse(spatial_support.roi_node(model, nodes["roi"]), image, pools,
                             lambda loc: True, args)
    return results


def _panels(canvas, result, mark):
    region = result["region"]
    panels = [figures.receptive_field_panel(canvas, result["field"]),
              figures.locations_panel(canvas, result["points"], result["weights"]),
              figures.region_panel(canvas, region.mask)]
    for panel in panels:
        mark(panel)
    texts = ["normalised to its peak", f"{len(result['points'])} points",
             f"{region.mask.mean():.0%} of the image, error {region.error:.3f}"]
    return [figures.caption(panel, text) for panel, text in zip(panels, texts)]


def draw(rows, canvas, nodes, args):
    """Writes the two figures; returns their paths."""
    names = list(rows)
    fig1 = []
    stride = 2 ** args.level

    def mark(panel, point, position):
        row, col = position  # the node's cell on the level map, and the chosen pixel
        figures.mark_box(panel, (row * stride, col * stride, (row + 1) * stride,
                                 (col + 1) * stride))
        return figures.mark_point(panel, point)

    for name in names:
        line = []
        for key in ("foreground", "background"):
            result = rows[name][key]
            line += _panels(canvas, result, lambda panel, p=nodes[key],
                            q=result["position"]: mark(panel, p, q))
        fig1.append(line)
    titles = [f"{kind}: {m}" for kind in ("fg", "bg") for m in
              ("receptive field", "sampling locations", "saliency region")]
    path1 = os.path.join(args.out, f"figure1_conv{args.level}.png")
    drawing.save_png(path1, figures.grid(
        fig1, [_row_title(n, rows[n]) for n in names], titles,
        heading=f"conv{args.level} nodes (cross: the chosen pixel, square: the node's "
                f"{stride}x{stride} cell): foreground {tuple(nodes['foreground'])}, "
                f"background {tuple(nodes['background'])}; saliency error bound "
                f"{args.error_bound:.0%}"))
    fig2 = [_panels(canvas, rows[name]["roi"],
                    lambda panel: figures.mark_box(panel, nodes["roi"])) for name in names]
    path2 = os.path.join(args.out, "figure2_roi.png")
    drawing.save_png(path2, figures.grid(
        fig2, [f"{n}\n{_pooling(rows[n])}" for n in names],
        ["RoI fc: receptive field", "effective bin locations", "saliency region"],
        heading=f"2fc node of the RoI (box) {tuple(round(v) for v in nodes['roi'])}"))
    return path1, path2


def _row_title(name, result):
    return name if name == result["variant"] else f"{name}\n({result['variant']})"


def _pooling(result):
    return result["pooling"].replace(" RoI pooling", "")


def _summary(rows, nodes):
    def node_summary(result):
        region = result["region"]
        return {"saliency_patches": region.patches, "saliency_fraction": float(region.mask.mean()),
                "saliency_error": region.error, "saliency_evaluations": region.evaluations,
                "points": int(len(result["points"])), "layers": result["layers"],
                **({"position": list(result["position"])} if "position" in result else {})}
    return {"nodes": {k: list(v) for k, v in nodes.items()},
            "runs": {name: {"variant": r["variant"], "model": r["described"],
                            **{key: node_summary(r[key])
                               for key in ("foreground", "background", "roi")}}
                     for name, r in rows.items()}}


def main(argv=None):
    args = _parse(argv)
    started = time.perf_counter()
    runs = parse_runs(args.model_dir)
    given_nodes(args)  # bad flags fail before any training
    if args.image is None:
        data = synthetic_runs.prepare_data(args.data, args.train_images, args.val_images,
                                           args.size, args.seed)
        args.image = os.path.join(data["root"], "val", "000001.png")
        args.annotations = args.annotations or data["annotation_file"]
    for name, model_dir in runs:
        ensure_trained(name, model_dir, args)

    image = detector.read_rgb(args.image)
    nodes = choose_nodes(args)
    first = spatial_support.run_params(runs[0][1])
    canvas, scale = spatial_support.fit_image(image, first.task.model.input_size[:2])
    nodes = {key: tuple(v * scale for v in value) for key, value in nodes.items()}

    rows = {}
    for name, model_dir in runs:
        begun = time.perf_counter()
        tf_keras.backend.clear_session()
        result = analyse_run(model_dir, canvas, nodes, args)
        label = name or result["variant"]
        rows[label if label not in rows else f"{label} ({model_dir})"] = result
        print(f"== analysed {model_dir} ({result['described']}) in "
              f"{time.perf_counter() - begun:.0f} s", flush=True)

    os.makedirs(args.out, exist_ok=True)
    paths = draw(rows, canvas, nodes, args)
    summary_path = os.path.join(args.out, "spatial_support.json")
    with open(summary_path, "w") as f:
        json.dump(_summary(rows, nodes), f, indent=2)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    for path in (*paths, summary_path):
        print(path)


if __name__ == "__main__":
    main()
