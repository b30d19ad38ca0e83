"""The composite implementation of deform_conv2d (standard TensorFlow ops) beside the
compiled kernel, on the 3x3 convolutions of ResNet-50.

For stages conv3, conv4 and conv5 at batch 2 of an 800x1216 and a 512x512 image, in
one process: the median time of the forward pass and of forward + backward (gradients
for every input) of both implementations, interleaved, their ratio, and the peak
memory of one forward + backward call of the composite (the peak RSS growth during
its first run in a fresh process, outputs included; target: at most 2 GiB, which
conv3 at 800x1216 must meet). That is what
portability costs: XLA, SavedModels without keras_dcn and LiteRT run the composite.

    python -m benchmarks.bench_composite [--quick]
"""

import argparse
import subprocess
import sys


from benchmarks import bench_deform_conv
from benchmarks import timing

PEAK_TARGET_MIB = 2048
MIB = 2**20


def peak_mib(height, width, channels):
    """Peak RSS growth (MiB) of the first call of the composite's gradient function
    (forward and backward) in this process, traced beforehand: TensorFlow's allocator
    holds no blocks for it yet, so the growth is everything the call needs at once,
    outputs included."""
    _, backward = bench_deform_conv._deform_functions(
        *bench_deform_conv._case(height, width, channels), implementation="composite")
    backward.get_concrete_function()
    with timing.PeakRss() as peak:
        [t.numpy() for t in backward()]
    return None if peak.growth is None else peak.growth / MIB


def _peak_in_fresh_process(height, width, channels):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_composite", "--peak",
         str(height), str(width), str(channels)],
        capture_output=True, text=True, check=True)
    value = result.stdout.split()[-1]
    return None if value == "None" else float(value)


def measure(height, width, channels, repeats):
    """Times of both implementations and the composite's peak memory at one shape."""
    case = bench_deform_conv._case(height, width, channels)
    functions = {}
    for implementation in ("custom", "composite"):
        forward, backward = bench_deform_conv._deform_functions(
            *case, implementation=implementation)
        functions[f"{implementation}_fwd"] = forward
        functions[f"{implementation}_fwdbwd"] = backward  # the forward pass and gradients
    seconds = timing.interleaved_medians(functions, repeats)
    row = {f"{name}_ms": 1e3 * value for name, value in seconds.items()}
    row["fwd_ratio"] = row["composite_fwd_ms"] / row["custom_fwd_ms"]
    row["fwdbwd_ratio"] = row["composite_fwdbwd_ms"] / row["custom_fwdbwd_ms"]
    peak = _peak_in_fresh_process(height, width, channels)
    if peak is not None:
        row["composite_peak_mib"] = peak
        row["targets"] = f"mem {timing.verdict(peak, PEAK_TARGET_MIB)}"
    else:
        row["targets"] = "mem n/a"
    return row


def run(quick=False):
    """Measures every (image, stage) pair; returns {"rows": [...]}."""
    repeats = 3 if quick else 5
    images = bench_deform_conv.IMAGES[1:] if quick else bench_deform_conv.IMAGES
    rows = []
    for height, width in images:
        for stage, stride, channels in bench_deform_conv.STAGES:
            h, w = -(-height // stride), -(-width // stride)
            row = {"image": f"{height}x{width}", "stage": stage,
                   "shape": f"{bench_deform_conv.BATCH}x{h}x{w}x{channels}"}
            row.update(measure(h, w, channels, repeats))
            rows.append(row)
    return {"rows": rows}


COLUMNS = (
    ("image", "image", "{}"), ("stage", "stage", "{}"), ("shape", "NHWC", "{}"),
    ("custom_fwd_ms", "kernel fwd ms", "{:.1f}"),
    ("composite_fwd_ms", "composite fwd ms", "{:.1f}"), ("fwd_ratio", "fwd x", "{:.2f}"),
    ("custom_fwdbwd_ms", "kernel f+b ms", "{:.1f}"),
    ("composite_fwdbwd_ms", "composite f+b ms", "{:.1f}"), ("fwdbwd_ratio", "f+b x", "{:.2f}"),
    ("composite_peak_mib", f"composite f+b peak MiB (<={PEAK_TARGET_MIB})", "{:.0f}"),
    ("targets", "targets", "{}"),
)


def report(result):
    """Prints the table; writes benchmarks/results/composite.json."""
    columns = [c for c in COLUMNS if all(c[0] in row for row in result["rows"])]
    timing.print_table(
        "deform_conv2d: composite of standard ops vs the compiled kernel, 3x3, float32, "
        f"batch {bench_deform_conv.BATCH} ({bench_deform_conv.machine()}); "
        "x: composite time / kernel time",
        columns, result["rows"])
    return timing.write_json("composite", {**result,
                                           "meta": {"machine": bench_deform_conv.machine()}})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512x512 only, fewer repeats")
    parser.add_argument("--peak", nargs=3, type=int, metavar=("H", "W", "C"),
                        help="only print peak_mib(H, W, C), measured in this process")
    args = parser.parse_args()
    if args.peak:
        print(peak_mib(*args.peak))
    else:
        print("wrote", report(run(quick=args.quick)))


if __name__ == "__main__":
    main()
