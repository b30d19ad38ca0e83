"""deform_conv2d against tf.nn.conv2d on the 3x3 convolutions of ResNet-50.

For stages conv3 (stride 8, 128 channels), conv4 (stride 16, 256) and conv5
(stride 32, 512) at batch 2 of an 800x1216 and a 512x512 image: median time of the
forward pass and of forward + backward (gradients for every input) of both ops in the
same process, their ratio, and the peak RSS growth of one deform_conv2d forward call
and one gradient call, in total and beyond the call's outputs (its temporary memory).

    python -m benchmarks.bench_deform_conv [--quick]
"""

import argparse
import platform

import numpy as np
import tensorflow as tf

from benchmarks import timing
from keras_dcn._library import ops as _lib
from keras_dcn.ops import deform_conv2d

STAGES = (("conv3", 8, 128), ("conv4", 16, 256), ("conv5", 32, 512))
IMAGES = ((800, 1216), (512, 512))
BATCH = 2


def _case(height, width, channels, dtype=tf.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((BATCH, height, width, channels)), dtype)
    kernel = tf.constant(rng.standard_normal((3, 3, channels, channels)) * 0.05, dtype)
    offsets = tf.constant(rng.standard_normal((BATCH, height, width, 18)) * 2.0, dtype)
    mask = tf.constant(rng.uniform(size=(BATCH, height, width, 9)), dtype)
    return x, kernel, offsets, mask


def measure(height, width, channels, repeats):
    x, kernel, offsets, mask = _case(height, width, channels)

    @tf.function
    def conv_forward():
        return tf.nn.conv2d(x, kernel, 1, "SAME")

    @tf.function
    def conv_backward():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
        return tape.gradient(y, [x, kernel])

    @tf.function
    def deform_forward():
        return deform_conv2d(x, offsets, kernel, mask, padding="same")

    @tf.function
    def deform_backward():
        with tf.GradientTape() as tape:
            tape.watch([x, offsets, mask, kernel])
            y = deform_conv2d(x, offsets, kernel, mask, padding="same")
        return tape.gradient(y, [x, offsets, mask, kernel])

    @tf.function
    def gradient_only():
        return _lib.dcn_deform_conv2d_grad(x, offsets, mask, kernel, upstream, padding="SAME")

    upstream = tf.ones_like(x)
    deform_forward().numpy()
    deform_backward()
    with timing.PeakRss() as forward_rss:
        deform_forward().numpy()
    with timing.PeakRss() as backward_rss:  # the gradient op alone
        [g.numpy() for g in gradient_only()]

    mib = 2**20
    forward_out = x.shape.num_elements() * 4  # the output has the input's shape
    backward_out = 4 * sum(t.shape.num_elements() for t in (x, offsets, mask, kernel))
    result = {
        "conv_fwd_ms": 1e3 * timing.median_seconds(conv_forward, repeats),
        "dcn_fwd_ms": 1e3 * timing.median_seconds(deform_forward, repeats),
        "conv_fwdbwd_ms": 1e3 * timing.median_seconds(
            lambda: (conv_forward(), *conv_backward()), repeats),
        "dcn_fwdbwd_ms": 1e3 * timing.median_seconds(
            lambda: (deform_forward(), *deform_backward()), repeats),
        "dcn_fwd_rss_mib": forward_rss.growth / mib,
        "dcn_fwdbwd_rss_mib": backward_rss.growth / mib,
        # RSS growth beyond the op's own outputs: its temporary memory.
        "dcn_fwd_temp_mib": max(0, forward_rss.growth - forward_out) / mib,
        "dcn_fwdbwd_temp_mib": max(0, backward_rss.growth - backward_out) / mib,
    }
    result["fwd_ratio"] = result["dcn_fwd_ms"] / result["conv_fwd_ms"]
    result["fwdbwd_ratio"] = result["dcn_fwdbwd_ms"] / result["conv_fwdbwd_ms"]
    return result


COLUMNS = (
    ("image", "image", "{}"), ("stage", "stage", "{}"), ("shape", "NHWC", "{}"),
    ("conv_fwd_ms", "conv fwd ms", "{:.1f}"), ("dcn_fwd_ms", "dcn fwd ms", "{:.1f}"),
    ("fwd_ratio", "fwd x", "{:.2f}"),
    ("conv_fwdbwd_ms", "conv f+b ms", "{:.1f}"), ("dcn_fwdbwd_ms", "dcn f+b ms", "{:.1f}"),
    ("fwdbwd_ratio", "f+b x", "{:.2f}"),
    ("dcn_fwd_rss_mib", "fwd RSS+ MiB", "{:.0f}"), ("dcn_fwd_temp_mib", "fwd temp MiB", "{:.0f}"),
    ("dcn_fwdbwd_rss_mib", "bwd RSS+ MiB", "{:.0f}"), ("dcn_fwdbwd_temp_mib", "bwd temp MiB", "{:.0f}"),
)


def run(quick=False):
    """Measures every (image, stage) pair; returns the rows of the table."""
    repeats = 3 if quick else 5
    images = IMAGES[1:] if quick else IMAGES
    rows = []
    for height, width in images:
        for stage, stride, channels in STAGES:
            h, w = -(-height // stride), -(-width // stride)
            row = {"image": f"{height}x{width}", "stage": stage,
                   "shape": f"{BATCH}x{h}x{w}x{channels}"}
            row.update(measure(h, w, channels, repeats))
            rows.append(row)
    return rows


def report(rows):
    timing.print_table(
        f"deform_conv2d vs tf.nn.conv2d, 3x3, float32, channels_last, batch {BATCH} "
        f"({platform.processor() or platform.machine()}, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} threads)",
        COLUMNS, rows)
    return timing.write_json("deform_conv", {"rows": rows})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512x512 only, fewer repeats")
    args = parser.parse_args()
    print("wrote", report(run(quick=args.quick)))


if __name__ == "__main__":
    main()
