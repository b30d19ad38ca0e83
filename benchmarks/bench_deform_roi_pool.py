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

and the ratios of the first two to the third. Model Garden takes boxes as
[batch, K, 4] (y1, x1, y2, x2) in image pixels and features as a dict {level: map}
with stride 2**level; it samples the centre of every bin without the half-pixel shift
(like aligned=False, but without raising small boxes to one pixel).

    python -m benchmarks.bench_deform_roi_pool [--quick]
"""

import argparse
import os
import platform

import numpy as np
import tensorflow as tf

from benchmarks import timing
from keras_dcn.ops import deform_roi_pool

IMAGE = (800, 1216)
BATCH = 2
ROIS_PER_IMAGE = 256
CHANNELS = 256
STRIDES = (8, 16, 32)
OUTPUT_SIZES = (7, 14)


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


def measure(stride, output_size, repeats, crop_and_resize):
    rng = np.random.default_rng(stride)
    height, width = -(-IMAGE[0] // stride), -(-IMAGE[1] // stride)
    features = tf.constant(rng.standard_normal((BATCH, height, width, CHANNELS)), tf.float32)
    boxes = _boxes()
    batch_index = np.repeat(np.arange(BATCH, dtype=np.float32), ROIS_PER_IMAGE)[:, None]
    rois = tf.constant(np.concatenate([batch_index, boxes.reshape(-1, 4)], axis=1))
    num_rois = BATCH * ROIS_PER_IMAGE
    offsets = tf.constant(0.1 * rng.standard_normal((num_rois, output_size, output_size, 2)),
                          tf.float32)
    mask = tf.constant(rng.uniform(size=(num_rois, output_size, output_size, 1)), tf.float32)
    kwargs = dict(output_size=output_size, spatial_scale=1.0 / stride)
    level = str(int(np.log2(stride)))
    mg_boxes = tf.constant(boxes[..., [1, 0, 3, 2]])  # y1, x1, y2, x2

    @tf.function
    def dcn_forward():
        return deform_roi_pool(features, rois, offsets, mask, **kwargs)

    @tf.function
    def dcn_backward():
        with tf.GradientTape() as tape:
            tape.watch([features, offsets, mask])
            out = deform_roi_pool(features, rois, offsets, mask, **kwargs)
        return tape.gradient(out, [features, offsets, mask])

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

    def median_ms(fn):
        return 1e3 * timing.median_seconds(fn, repeats, warmup=2)

    row = {
        "dcn_fwd_ms": median_ms(dcn_forward),
        "dcn_fwdbwd_ms": median_ms(lambda: (dcn_forward(), *dcn_backward())),
        "align_fwd_ms": median_ms(align_forward),
        "align_fwdbwd_ms": median_ms(lambda: (align_forward(), align_backward())),
    }
    if crop_and_resize is not None:
        row["mg_fwd_ms"] = median_ms(mg_forward)
        row["mg_fwdbwd_ms"] = median_ms(lambda: (mg_forward(), mg_backward()))
        for name in ("dcn", "align"):
            for kind in ("fwd", "fwdbwd"):
                row[f"{name}_{kind}_ratio"] = row[f"{name}_{kind}_ms"] / row[f"mg_{kind}_ms"]
    return row


def run(quick=False):
    """Measures every (stride, output size) pair; returns the rows of the table."""
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
    return rows


COLUMNS = (
    ("stride", "stride", "{}"), ("bins", "bins", "{}"), ("features", "NHWC", "{}"),
    ("mg_fwd_ms", "MG fwd ms", "{:.1f}"),
    ("dcn_fwd_ms", "dcn fwd ms", "{:.1f}"), ("dcn_fwd_ratio", "x", "{:.2f}"),
    ("align_fwd_ms", "sr1 fwd ms", "{:.1f}"), ("align_fwd_ratio", "x", "{:.2f}"),
    ("mg_fwdbwd_ms", "MG f+b ms", "{:.1f}"),
    ("dcn_fwdbwd_ms", "dcn f+b ms", "{:.1f}"), ("dcn_fwdbwd_ratio", "x", "{:.2f}"),
    ("align_fwdbwd_ms", "sr1 f+b ms", "{:.1f}"), ("align_fwdbwd_ratio", "x", "{:.2f}"),
)


def report(rows):
    columns = [c for c in COLUMNS if all(c[0] in row for row in rows)]
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
    timing.print_table(
        f"deform_roi_pool vs Model Garden multilevel_crop_and_resize (MG), "
        f"{BATCH * ROIS_PER_IMAGE} RoIs, float32, batch {BATCH} of {IMAGE[0]}x{IMAGE[1]}; "
        f"dcn: offsets + mask, 2x2 samples per bin; sr1: no offsets, 1 sample per bin; "
        f"x: time / MG time ({platform.processor() or platform.machine()}, {threads} threads)",
        columns, rows)
    meta = {"tensorflow": tf.__version__, "cpus": os.cpu_count(),
            "load_average": os.getloadavg()}
    return timing.write_json("deform_roi_pool", {"rows": rows, "meta": meta})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    print("wrote", report(run(quick=args.quick)))


if __name__ == "__main__":
    main()
