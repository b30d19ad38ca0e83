"""Spatial support of trained runs of the deformable Mask R-CNN: the pictures of
Figures 1 and 2 of the paper (`keras_dcn.analysis`; definitions in its docstrings).

`analyse_run` rebuilds a run's model from its `params.yaml` and latest checkpoint
(`models.analysis.spatial_support`) and analyses three nodes of one image:

* a foreground and a background node in the last layer of the backbone stage `level`
  (5: conv5, the paper's Figure 1): effective receptive field, effective sampling
  locations of the deformable convolutions of that stage (for a regular run, of its
  regular 3x3 convolutions, through zero offsets) and the error-bounded saliency region;
* the Fast R-CNN head's last fc features of a RoI (Figure 2): the same three, with the
  effective bin locations of the box RoI pooling (RoIAlign for a regular
  run, deformable RoI pooling otherwise).

`draw_figures` writes `figure1_conv<level>.png` (rows: runs; columns: the three
modalities of the foreground node, then of the background node) and
`figure2_roi.png` (rows: runs; columns: the three modalities of the RoI's fc node);
`write_summary` writes `spatial_support.json` (nodes, saliency-region sizes and
errors, point counts).
"""

import json
import os

import numpy as np

from keras_dcn import analysis
from models.analysis import figures
from models.analysis import spatial_support
from models.common import image_files
from models.configs import maskrcnn as dcn_config


def analyse(node, image, layers, error_bound, patch_size):
    """The three modalities of `node`: `{'field', 'points', 'weights', 'region'}`, the
    sampling locations of the `layers` calls, the saliency region within `error_bound`
    over patches of `patch_size` pixels."""
    field = analysis.effective_receptive_field(node, image)
    locations = analysis.effective_sampling_locations(node, image, layers)
    supports = [loc.support() for loc in locations]
    points = np.concatenate([p for p, _ in supports] or [np.zeros((0, 2))])
    weights = np.concatenate([w for _, w in supports] or [np.zeros((0,))])
    region = analysis.error_bounded_saliency_region(
        node, image, error_bound=error_bound, patch_size=patch_size, importance=field)
    return {"field": field, "points": points, "weights": weights, "region": region,
            "layers": [loc.layer for loc in locations]}


def analyse_run(model_dir, canvas, nodes, level, error_bound, patch_size):
    """Results of the three nodes for one run, with its variant name. `canvas` is the
    image at the model's input size, `nodes` are `{'foreground': (y, x), 'background':
    (y, x), 'roi': (y1, x1, y2, x2)}` in its pixels; the backbone nodes lie in stage
    `level`."""
    params = spatial_support.run_params(model_dir)
    model = spatial_support.load_model(params, model_dir, probe_stages=(level,))
    convs, pools = spatial_support.probed_layers(model, level)
    stride = spatial_support.level_stride(params.task.model, level)
    level_size = (canvas.shape[0] // stride, canvas.shape[1] // stride)
    image = canvas.astype(np.float32)
    results = {"variant": params.task.model.variant,
               "described": dcn_config.describe(params.task.model),
               "pooling": dcn_config.roi_pooling_name(params.task.model),
               "stride": stride}
    for key in ("foreground", "background"):
        y, x = nodes[key]
        position = (min(int(y) // stride, level_size[0] - 1),
                    min(int(x) // stride, level_size[1] - 1))
        node = spatial_support.backbone_node(model, level, position)
        results[key] = analyse(node, image, convs, error_bound, patch_size)
        results[key]["position"] = position
    results["roi"] = analyse(spatial_support.roi_node(model, nodes["roi"]), image, pools,
                             error_bound, patch_size)
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


def draw_figures(rows, canvas, nodes, level, error_bound, out_dir):
    """Writes the two figures of the results `rows` (`{name: analyse_run(...)}`) to
    `out_dir`; returns their paths."""
    names = list(rows)
    fig1 = []

    def mark(panel, point, position, stride):
        row, col = position  # the node's cell on the level map, and the chosen pixel
        figures.mark_box(panel, (row * stride, col * stride, (row + 1) * stride,
                                 (col + 1) * stride))
        return figures.mark_point(panel, point)

    for name in names:
        line = []
        for key in ("foreground", "background"):
            result = rows[name][key]
            line += _panels(canvas, result, lambda panel, p=nodes[key],
                            q=result["position"], s=rows[name]["stride"]: mark(panel, p, q, s))
        fig1.append(line)
    cells = " or ".join(f"{s}x{s}" for s in sorted({rows[n]["stride"] for n in names}))
    titles = [f"{kind}: {m}" for kind in ("fg", "bg") for m in
              ("receptive field", "sampling locations", "saliency region")]
    path1 = os.path.join(out_dir, f"figure1_conv{level}.png")
    image_files.save_png(path1, figures.grid(
        fig1, [_row_title(n, rows[n]) for n in names], titles,
        heading=f"conv{level} nodes (cross: the chosen pixel, square: the node's "
                f"{cells} cell): foreground {tuple(nodes['foreground'])}, "
                f"background {tuple(nodes['background'])}; saliency error bound "
                f"{error_bound:.0%}"))
    fig2 = [_panels(canvas, rows[name]["roi"],
                    lambda panel: figures.mark_box(panel, nodes["roi"])) for name in names]
    path2 = os.path.join(out_dir, "figure2_roi.png")
    image_files.save_png(path2, figures.grid(
        fig2, [f"{n}\n{_pooling(rows[n])}" for n in names],
        ["RoI fc: receptive field", "effective bin locations", "saliency region"],
        heading=f"2fc node of the RoI (box) {tuple(round(v) for v in nodes['roi'])}"))
    return path1, path2


def _row_title(name, result):
    return name if name == result["variant"] else f"{name}\n({result['variant']})"


def _pooling(result):
    return result["pooling"].replace(" RoI pooling", "")


def summary(rows, nodes):
    """The JSON summary of the analysis: the nodes and, per run, its model and, per
    node, the saliency region's size, error and cost and the sampling points."""
    def node_summary(result):
        region = result["region"]
        return {"saliency_patches": region.patches,
                "saliency_fraction": float(region.mask.mean()),
                "saliency_error": region.error, "saliency_evaluations": region.evaluations,
                "points": int(len(result["points"])), "layers": result["layers"],
                **({"position": list(result["position"])} if "position" in result else {})}
    return {"nodes": {k: list(v) for k, v in nodes.items()},
            "runs": {name: {"variant": r["variant"], "model": r["described"],
                            **{key: node_summary(r[key])
                               for key in ("foreground", "background", "roi")}}
                     for name, r in rows.items()}}


def write_summary(rows, nodes, out_dir) -> str:
    """Writes `summary(rows, nodes)` to `out_dir/spatial_support.json`; returns its path."""
    path = os.path.join(out_dir, "spatial_support.json")
    with open(path, "w") as f:
        json.dump(summary(rows, nodes), f, indent=2)
    return path
