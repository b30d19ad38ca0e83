"""deform_roi_pool against Model Garden's RoIAlign (multilevel_crop_and_resize).

512 RoIs (256 per image, batch 2 of an 800x1216 image) pooled from 256-channel
features at stride 8, 16 and 32, into 7x7 and 14x14 bins: median time of the forward
pass and of forward + backward in the same process, for

  * `deform_roi_pool` with offsets and a mask (DCNv2) at its default sampling_ratio=2
    (2 x 2 samples per bin), gradients for features, offsets and mask;
  * `deform_roi_pool` with sampling_ratio=1 and no offsets or mask, which reads what
    Model Garden reads (one sample per bin), gradient for the features;
  * `official.vision.ops.spatial_transform_ops.multilevel_crop_and_resize` on the
    same boxes (one pyramid level, so every box goes to that level), gradient for the
    features;

and the ratios of the first two to the third (target for deform_roi_pool with offsets
and mask, forward + backward: <= 1.5x), the calls interleaved so that load on the
machine affects all alike. Then deform_roi_pool (offsets and mask, forward + backward)
in float16 and bfloat16 against float32 (target: no slower, ratio <= 1). Model Garden
takes boxes as
[batch, K, 4] (y1, x1, y2, x2) in image pixels and features as a dict {level: map}
with stride 2**level; it samples the centre of every bin without the half-pixel shift
(like aligned=False, but without raising small boxes to one pixel).

    python -m benchmarks.bench_deform_roi_pool [--quick]
"""

import argparse
import os

import numpy as np
import tensorflow as tf

from benchmarks import bench_deform_conv, timing
from keras_dcn.ops import deform_roi_pool

IMAGE = (800, 1216)
BATCH = 2
ROIS_PER_IMAGE = 256
CHANNELS = 256
STRIDES = (8, 16, 32)
OUTPUT_SIZES = (7, 14)
FORWARD_BACKWARD_TARGET = 1.5
HALF_TYPES = (tf.float16, tf.bfloat16)


def _boxes(seed=0):
    """[BATCH, ROIS_PER_IMAGE, 4] boxes (x1, y1, x2, y2) inside the image, with sides
    from 16 to 600 pixels (log-uniform), as a detector's proposals."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE
    shape = (BATCH, ROIS_PER_IMAGE)
    box_w = np.exp(rng.uniform(np.log(16), np.log(600), shape))
    box_h = np.exp(rng.uniform(np.log(16), np.log(600), shape))
    x1 = rng.uniform(0, 1, shape) * np.maximum(width - box_w, 0)
    y1 = rng.uniform(0, 1, shape) * np.maximum(height - box_h, 0)
    return np.stack([x1, y1, np.minimum(x1 + box_w, width), np.minimum(y1 + box_h, height)],
                    axis=-1).astype(np.float32)


def _model_garden():
    try:
        from official.vision.ops import spatial_transform_ops
    except ImportError:  # tf-models-official is optional
        return None
    return spatial_transform_ops.multilevel_crop_and_resize


def _inputs(stride, output_size, dtype=tf.float32):
    """Features, rois, offsets and mask of one (stride, output size) case, and the boxes
    in Model Garden's layout ([batch, K, 4] as y1, x1, y2, x2)."""
    rng = np.random.default_rng(stride)
    height, width = -(-IMAGE[0] // stride), -(-IMAGE[1] // stride)
    features = tf.constant(rng.standard_normal((BATCH, height, width, CHANNELS)), dtype)
    boxes = _boxes()
    batch_index = np.repeat(np.arange(BATCH, dtype=np.float32), ROIS_PER_IMAGE)[:, None]
    rois = tf.constant(np.concatenate([batch_index, boxes.reshape(-1, 4)], axis=1), dtype)
    num_rois = BATCH * ROIS_PER_IMAGE
    offsets = tf.constant(0.1 * rng.standard_normal((num_rois, output_size, output_size, 2)),
                          dtype)
    mask = tf.constant(rng.uniform(size=(num_rois, output_size, output_size, 1)), dtype)
    return features, rois, offsets, mask, tf.constant(boxes[..., [1, 0, 3, 2]])


def _deform_functions(features, rois, offsets, mask, **kwargs):
    """tf.functions of deform_roi_pool (offsets and mask) forward and of its gradients
    with respect to features, offsets and mask."""

    @tf.function
    def forward():
        return deform_roi_pool(features, rois, offsets, mask, **kwargs)

    @tf.function
    def backward():
        with tf.GradientTape() as tape:
            tape.watch([features, offsets, mask])
            out = deform_roi_pool(features, rois, offsets, mask, **kwargs)
        return tape.gradient(out, [features, offsets, mask])

    return forward, backward


def measure(stride, output_size, repeats, crop_and_resize):
    """Times of one (stride, output size) case in float32 (see the module docstring)."""
    features, rois, offsets, mask, mg_boxes = _inputs(stride, output_size)
    kwargs = dict(output_size=output_size, spatial_scale=1.0 / stride)
    level = str(int(np.log2(stride)))
    dcn_forward, dcn_backward = _deform_functions(features, rois, offsets, mask, **kwargs)

    @tf.function
    def align_forward():
        return deform_roi_pool(features, rois, sampling_ratio=1, **kwargs)

    @tf.function
    def align_backward():
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = deform_roi_pool(features, rois, sampling_ratio=1, **kwargs)
        return tape.gradient(out, features)

    @tf.function
    def mg_forward():
        return crop_and_resize({level: features}, mg_boxes, output_size=output_size)

    @tf.function
    def mg_backward():
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = crop_and_resize({level: features}, mg_boxes, output_size=output_size)
        return tape.gradient(out, features)

    functions = {
        "dcn_fwd": dcn_forward,
        "dcn_fwdbwd": lambda: [dcn_forward(), *dcn_backward()],
        "align_fwd": align_forward,
        "align_fwdbwd": lambda: [align_forward(), align_backward()],
    }
    if crop_and_resize is not None:
        functions["mg_fwd"] = mg_forward
        functions["mg_fwdbwd"] = lambda: [mg_forward(), mg_backward()]
    seconds = timing.interleaved_medians(functions, repeats, warmup=2)
    row = {f"{name}_ms": 1e3 * value for name, value in seconds.items()}
    if crop_and_resize is not None:
        for name in ("dcn", "align"):
            for kind in ("fwd", "fwdbwd"):
                row[f"{name}_{kind}_ratio"] = row[f"{name}_{kind}_ms"] / row[f"mg_{kind}_ms"]
        row["target"] = timing.verdict(row["dcn_fwdbwd_ratio"], FORWARD_BACKWARD_TARGET)
    return row


def measure_dtypes(stride, output_size, repeats):
    """deform_roi_pool (offsets and mask) forward + backward in every half type against
    float32, interleaved; returns one row per half type."""
    functions = {}
    for dtype in (tf.float32, *HALF_TYPES):
        forward, backward = _deform_functions(
            *_inputs(stride, output_size, dtype)[:4], output_size=output_size,
            spatial_scale=1.0 / stride)
        functions[dtype.name] = (
            lambda forward=forward, backward=backward: [forward(), *backward()])
    ms = {name: 1e3 * value
          for name, value in timing.interleaved_medians(functions, repeats).items()}
    rows = []
    for dtype in HALF_TYPES:
        ratio = ms[dtype.name] / ms["float32"]
        rows.append({"dtype": dtype.name, "stride": stride,
                     "bins": f"{output_size}x{output_size}",
                     "f32_fwdbwd_ms": ms["float32"], "fwdbwd_ms": ms[dtype.name],
                     "fwdbwd_ratio": ratio, "target": timing.verdict(ratio, 1.0)})
    return rows


def run(quick=False):
    """Measures every (stride, output size) pair, then the half types at stride 8 and
    14x14 bins; returns {"rows": [...], "dtypes": [...]}."""
    repeats = 3 if quick else 10
    crop_and_resize = _model_garden()
    rows = []
    for stride in STRIDES:
        for output_size in OUTPUT_SIZES:
            height, width = -(-IMAGE[0] // stride), -(-IMAGE[1] // stride)
            row = {"stride": stride, "bins": f"{output_size}x{output_size}",
                   "features": f"{BATCH}x{height}x{width}x{CHANNELS}",
                   "rois": BATCH * ROIS_PER_IMAGE}
            row.update(measure(stride, output_size, repeats, crop_and_resize))
            rows.append(row)
    return {"rows": rows, "dtypes": measure_dtypes(STRIDES[0], OUTPUT_SIZES[-1], repeats)}


COLUMNS = (
    ("stride", "stride", "{}"), ("bins", "bins", "{}"), ("features", "NHWC", "{}"),
    ("mg_fwd_ms", "MG fwd ms", "{:.1f}"),
    ("dcn_fwd_ms", "dcn fwd ms", "{:.1f}"), ("dcn_fwd_ratio", "x", "{:.2f}"),
    ("align_fwd_ms", "sr1 fwd ms", "{:.1f}"), ("align_fwd_ratio", "x", "{:.2f}"),
    ("mg_fwdbwd_ms", "MG f+b ms", "{:.1f}"),
    ("dcn_fwdbwd_ms", "dcn f+b ms", "{:.1f}"), ("dcn_fwdbwd_ratio", "x", "{:.2f}"),
    ("align_fwdbwd_ms", "sr1 f+b ms", "{:.1f}"), ("align_fwdbwd_ratio", "x", "{:.2f}"),
    ("target", f"dcn f+b x <= {FORWARD_BACKWARD_TARGET}", "{}"),
)

DTYPE_COLUMNS = (
    ("dtype", "dtype", "{}"), ("stride", "stride", "{}"), ("bins", "bins", "{}"),
    ("f32_fwdbwd_ms", "f32 f+b ms", "{:.1f}"), ("fwdbwd_ms", "f+b ms", "{:.1f}"),
    ("fwdbwd_ratio", "x (<=1)", "{:.2f}"), ("target", "target", "{}"),
)


def report(result):
    rows = result["rows"]
    columns = [c for c in COLUMNS if all(c[0] in row for row in rows)]
    timing.print_table(
        f"deform_roi_pool vs Model Garden multilevel_crop_and_resize (MG), "
        f"{BATCH * ROIS_PER_IMAGE} RoIs, float32, batch {BATCH} of {IMAGE[0]}x{IMAGE[1]}; "
        f"dcn: offsets + mask, 2x2 samples per bin; sr1: no offsets, 1 sample per bin; "
        f"x: time / MG time ({bench_deform_conv.machine()})",
        columns, rows)
    timing.print_table(
        "deform_roi_pool (offsets + mask) in float16 / bfloat16 vs float32; "
        "x: time / float32 time", DTYPE_COLUMNS, result["dtypes"])
    meta = {"machine": bench_deform_conv.machine(), "load_average": os.getloadavg()}
    return timing.write_json("deform_roi_pool", {**result, "meta": meta})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    print("wrote", report(run(quick=args.quick)))


if __name__ == "__main__":
    main()
