"""deform_conv2d against tf.nn.conv2d on the 3x3 convolutions of ResNet-50.

For stages conv3 (stride 8, 128 channels), conv4 (stride 16, 256) and conv5
(stride 32, 512) at batch 2 of an 800x1216 and a 512x512 image, in one process:

  * the median time of the forward pass and of forward + backward (gradients for
    every input) of both ops, the calls interleaved so that load on the machine
    affects both alike, and their ratios against the targets (forward <= 1.3x,
    forward + backward <= 2.0x);
  * the temporary memory of one deform_conv2d forward call and of one forward and
    backward call (its gradient's two ops), as the peak RSS growth during the call
    (target <= 64 MiB);
  * float16 and bfloat16 against float32 for deform_conv2d itself: the median of the
    per-round ratios and its 90% bootstrap interval. Targets: bfloat16 <= 0.75x where
    the CPU has AVX512_BF16 (else <= 1x); float16 <= 1x, and measurably below 1 (the
    interval's high end) where the CPU has AVX512_FP16.

The CPU's model and the features that matter here head the output and go into the
JSON (meta.cpu).

    python -m benchmarks.bench_deform_conv [--quick]
"""

import argparse
import os
import statistics

import numpy as np
import tensorflow as tf

from benchmarks import timing
from keras_dcn import _library
from keras_dcn.ops import deform_conv2d

STAGES = (("conv3", 8, 128), ("conv4", 16, 256), ("conv5", 32, 512))
IMAGES = ((800, 1216), (512, 512))
BATCH = 2
FORWARD_TARGET = 1.3
FORWARD_BACKWARD_TARGET = 2.0
TEMP_MIB_TARGET = 64
HALF_TYPES = (tf.float16, tf.bfloat16)
# Time against float32 a half type must keep to where the CPU has the feature (else 1).
HALF_TARGETS = {"bfloat16": ("avx512_bf16", 0.75), "float16": ("avx512_fp16", 1.0)}
MIB = 2**20


def _case(height, width, channels, dtype=tf.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((BATCH, height, width, channels)), dtype)
    kernel = tf.constant(rng.standard_normal((3, 3, channels, channels)) * 0.05, dtype)
    offsets = tf.constant(rng.standard_normal((BATCH, height, width, 18)) * 2.0, dtype)
    mask = tf.constant(rng.uniform(size=(BATCH, height, width, 9)), dtype)
    return x, kernel, offsets, mask


def _deform_functions(x, kernel, offsets, mask, implementation="auto"):
    """tf.functions of the deform_conv2d forward pass and of its gradients (which
    compute the forward pass again), with `implementation`."""

    @tf.function
    def forward():
        return deform_conv2d(x, offsets, kernel, mask, padding="same",
                             implementation=implementation)

    @tf.function
    def backward():
        with tf.GradientTape() as tape:
            tape.watch([x, offsets, mask, kernel])
            y = deform_conv2d(x, offsets, kernel, mask, padding="same",
                              implementation=implementation)
        return tape.gradient(y, [x, offsets, mask, kernel])

    return forward, backward


def _temporary_memory(x, kernel, offsets, mask):
    """Peak RSS growth (MiB) of one forward call and of one forward and backward call
    (the gradient's two ops, which may run at once).

    Each call is measured after a warm-up call whose outputs were freed. TensorFlow
    serves tensors from its own pool, which then already holds blocks for the outputs,
    while the ops' scratch buffers come from malloc: the growth is the ops' temporary
    memory (at most that plus their outputs, should the pool not reuse the blocks)."""
    forward, backward = _deform_functions(x, kernel, offsets, mask)
    forward().numpy()
    [g.numpy() for g in backward()]
    with timing.PeakRss() as forward_rss:
        forward().numpy()
    with timing.PeakRss() as backward_rss:
        [g.numpy() for g in backward()]
    if forward_rss.growth is None:
        return {}
    return {"dcn_fwd_temp_mib": forward_rss.growth / MIB,
            "dcn_bwd_temp_mib": backward_rss.growth / MIB}


def measure(height, width, channels, repeats):
    """Times and memory of one stage's shape in float32 (see the module docstring)."""
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

    deform_forward, deform_backward = _deform_functions(x, kernel, offsets, mask)
    seconds = timing.interleaved_medians({
        "conv_fwd": conv_forward,
        "dcn_fwd": deform_forward,
        "conv_fwdbwd": lambda: [conv_forward(), *conv_backward()],
        "dcn_fwdbwd": lambda: [deform_forward(), *deform_backward()],
    }, repeats)
    row = {f"{name}_ms": 1e3 * value for name, value in seconds.items()}
    row["fwd_ratio"] = row["dcn_fwd_ms"] / row["conv_fwd_ms"]
    row["fwdbwd_ratio"] = row["dcn_fwdbwd_ms"] / row["conv_fwdbwd_ms"]
    row.update(_temporary_memory(x, kernel, offsets, mask))
    temp = max(row.get("dcn_fwd_temp_mib", 0), row.get("dcn_bwd_temp_mib", 0))
    row["targets"] = ", ".join([
        f"fwd {timing.verdict(row['fwd_ratio'], FORWARD_TARGET)}",
        f"f+b {timing.verdict(row['fwdbwd_ratio'], FORWARD_BACKWARD_TARGET)}",
        f"mem {timing.verdict(temp, TEMP_MIB_TARGET)}" if "dcn_fwd_temp_mib" in row else "mem n/a",
    ])
    return row


def half_type_verdict(dtype, ratio, high, features):
    """'ok' or 'MISSED' for `dtype`'s median time ratio to float32 (`high`: the high
    end of its interval) on a CPU with `features` (HALF_TARGETS; float16 must be
    measurably faster where the CPU has AVX512_FP16)."""
    feature, target = HALF_TARGETS[dtype]
    if feature not in features:
        return timing.verdict(ratio, 1.0)
    if dtype == "float16":
        return timing.verdict_faster(high)
    return timing.verdict(ratio, target)


def half_type_target(dtype, features):
    """The target of half_type_verdict, in words."""
    feature, target = HALF_TARGETS[dtype]
    if feature not in features:
        return "<= 1x"
    return "< 1x" if dtype == "float16" else f"<= {target}x"


def measure_dtypes(height, width, channels, repeats):
    """deform_conv2d forward and forward + backward in every half type against float32,
    interleaved; returns one row per half type, with the median of the per-round
    ratios, its 90% interval and the verdict against its target on this CPU."""
    features = timing.cpu()["features"]
    functions = {}
    for dtype in (tf.float32, *HALF_TYPES):
        forward, backward = _deform_functions(*_case(height, width, channels, dtype))
        functions[f"{dtype.name}_fwd"] = forward
        functions[f"{dtype.name}_fwdbwd"] = (
            lambda forward=forward, backward=backward: [forward(), *backward()])
    times = timing.interleaved_times(functions, repeats)
    ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    rows = []
    for dtype in HALF_TYPES:
        row = {"dtype": dtype.name, "shape": f"{BATCH}x{height}x{width}x{channels}",
               "target": half_type_target(dtype.name, features)}
        verdicts = []
        for part, label in (("fwd", "fwd"), ("fwdbwd", "f+b")):
            ratio, low, high = timing.paired_ratio(times[f"{dtype.name}_{part}"],
                                                   times[f"float32_{part}"])
            row.update({f"f32_{part}_ms": ms[f"float32_{part}"],
                        f"{part}_ms": ms[f"{dtype.name}_{part}"],
                        f"{part}_ratio": ratio,
                        f"{part}_interval": f"{low:.2f}-{high:.2f}"})
            verdicts.append(f"{label} {half_type_verdict(dtype.name, ratio, high, features)}")
        row["targets"] = ", ".join(verdicts)
        rows.append(row)
    return rows


def run(quick=False):
    """Measures every (image, stage) pair, then the half types on conv4 of the first
    image; returns {"rows": [...], "dtypes": [...]}."""
    repeats = 3 if quick else 7
    images = IMAGES[1:] if quick else IMAGES
    rows = []
    for height, width in images:
        for stage, stride, channels in STAGES:
            h, w = -(-height // stride), -(-width // stride)
            row = {"image": f"{height}x{width}", "stage": stage,
                   "shape": f"{BATCH}x{h}x{w}x{channels}"}
            row.update(measure(h, w, channels, repeats))
            rows.append(row)
    height, width = images[0]
    _, stride, channels = STAGES[1]
    dtypes = measure_dtypes(-(-height // stride), -(-width // stride), channels,
                            2 * repeats + 1)
    return {"rows": rows, "dtypes": dtypes}


COLUMNS = (
    ("image", "image", "{}"), ("stage", "stage", "{}"), ("shape", "NHWC", "{}"),
    ("conv_fwd_ms", "conv fwd ms", "{:.1f}"), ("dcn_fwd_ms", "dcn fwd ms", "{:.1f}"),
    ("fwd_ratio", f"fwd x (<={FORWARD_TARGET})", "{:.2f}"),
    ("conv_fwdbwd_ms", "conv f+b ms", "{:.1f}"), ("dcn_fwdbwd_ms", "dcn f+b ms", "{:.1f}"),
    ("fwdbwd_ratio", f"f+b x (<={FORWARD_BACKWARD_TARGET})", "{:.2f}"),
    ("dcn_fwd_temp_mib", f"fwd temp MiB (<={TEMP_MIB_TARGET})", "{:.1f}"),
    ("dcn_bwd_temp_mib", f"grad temp MiB (<={TEMP_MIB_TARGET})", "{:.1f}"),
    ("targets", "targets", "{}"),
)

DTYPE_COLUMNS = (
    ("dtype", "dtype", "{}"), ("shape", "NHWC", "{}"),
    ("f32_fwd_ms", "f32 fwd ms", "{:.1f}"), ("fwd_ms", "fwd ms", "{:.1f}"),
    ("fwd_ratio", "fwd x", "{:.2f}"), ("fwd_interval", "90% interval", "{}"),
    ("f32_fwdbwd_ms", "f32 f+b ms", "{:.1f}"), ("fwdbwd_ms", "f+b ms", "{:.1f}"),
    ("fwdbwd_ratio", "f+b x", "{:.2f}"), ("fwdbwd_interval", "90% interval", "{}"),
    ("target", "target", "{}"), ("targets", "targets", "{}"),
)


def machine():
    """A one-line description of where the numbers were measured."""
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
    return (f"{timing.cpu_line()}; {threads} threads, TensorFlow {tf.__version__}, "
            f"keras_dcn CPU kernels: {_library.cpu_isa()}")


def report(result):
    columns = [c for c in COLUMNS if all(c[0] in row for row in result["rows"])]
    timing.print_table(
        f"deform_conv2d vs tf.nn.conv2d, 3x3, float32, channels_last, batch {BATCH} "
        f"({machine()}); x: deform_conv2d time / tf.nn.conv2d time",
        columns, result["rows"])
    timing.print_table(
        "deform_conv2d in float16 / bfloat16 vs float32; x: median over rounds of "
        "time / float32 time (targets by this CPU's features)",
        DTYPE_COLUMNS, result["dtypes"])
    meta = {"machine": machine(), "cpu": timing.cpu(), "cpu_kernels": _library.cpu_isa(),
            "load_average": os.getloadavg()}
    return timing.write_json("deform_conv", {**result, "meta": meta})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512x512 only, fewer repeats")
    args = parser.parse_args()
    print("wrote", report(run(quick=args.quick)))


if __name__ == "__main__":
    main()
